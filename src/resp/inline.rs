//! Splitting an inline command line into arguments, the way Redis's
//! `sdssplitargs` does (what `redis-cli` users and `telnet`/`nc` health checks
//! rely on).
//!
//! This module owns only the tokenising of one line that has already been cut
//! at its newline; finding the line and its size limit is `request`'s job.

/// Why a line could not be split: the only failure `sdssplitargs` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct UnbalancedQuotes;

/// C's `isspace` in the "C" locale.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0b | 0x0c)
}

/// Bytes that end an unquoted token (note: not \v or \f, unlike `is_space`).
fn ends_token(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\r' | b'\t')
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Split `line` into arguments. Blanks separate arguments; "double quotes"
/// understand `\n \r \t \b \a \xHH` and `\<any>`; 'single quotes' understand
/// only `\'`. A closing quote must be followed by a blank or the end of line.
/// An empty or blank line yields no arguments.
pub(crate) fn split_args(line: &[u8]) -> Result<Vec<Vec<u8>>, UnbalancedQuotes> {
    let mut args = Vec::new();
    let mut at = 0;
    loop {
        while line.get(at).is_some_and(|&b| is_space(b)) {
            at += 1;
        }
        if at >= line.len() {
            return Ok(args);
        }
        let (token, next) = split_token(line, at)?;
        args.push(token);
        at = next;
    }
}

/// Read one token starting at `at` (not a blank); return it and where to go on.
/// A quote may open mid-token (`ab"c d"` is `abc d`); its closing quote ends the token.
fn split_token(line: &[u8], mut at: usize) -> Result<(Vec<u8>, usize), UnbalancedQuotes> {
    let mut token = Vec::new();
    loop {
        match line.get(at) {
            None => return Ok((token, at)),
            Some(b'"') => {
                let next = double_quoted(line, at + 1, &mut token)?;
                return Ok((token, next));
            }
            Some(b'\'') => {
                let next = single_quoted(line, at + 1, &mut token)?;
                return Ok((token, next));
            }
            Some(&b) if ends_token(b) => return Ok((token, at + 1)),
            Some(&b) => {
                token.push(b);
                at += 1;
            }
        }
    }
}

/// Closing quote at `at`: valid only when followed by a blank or the end.
fn close_quote(line: &[u8], at: usize) -> Result<usize, UnbalancedQuotes> {
    match line.get(at + 1) {
        Some(&b) if !is_space(b) => Err(UnbalancedQuotes),
        _ => Ok(at + 1),
    }
}

/// Consume a "double quoted" section starting after the opening quote.
fn double_quoted(
    line: &[u8],
    mut at: usize,
    token: &mut Vec<u8>,
) -> Result<usize, UnbalancedQuotes> {
    loop {
        match line.get(at) {
            None => return Err(UnbalancedQuotes),
            Some(b'"') => return close_quote(line, at),
            Some(b'\\') if line.get(at + 1).is_some() => {
                let hex = (line.get(at + 1) == Some(&b'x'))
                    .then(|| {
                        Some((
                            hex_value(*line.get(at + 2)?)?,
                            hex_value(*line.get(at + 3)?)?,
                        ))
                    })
                    .flatten();
                if let Some((hi, lo)) = hex {
                    token.push(hi * 16 + lo);
                    at += 4;
                } else {
                    let escaped = line.get(at + 1).copied().unwrap_or(b'\\');
                    token.push(match escaped {
                        b'n' => b'\n',
                        b'r' => b'\r',
                        b't' => b'\t',
                        b'b' => 0x08,
                        b'a' => 0x07,
                        other => other,
                    });
                    at += 2;
                }
            }
            Some(&b) => {
                token.push(b);
                at += 1;
            }
        }
    }
}

/// Consume a 'single quoted' section starting after the opening quote.
fn single_quoted(
    line: &[u8],
    mut at: usize,
    token: &mut Vec<u8>,
) -> Result<usize, UnbalancedQuotes> {
    loop {
        match line.get(at) {
            None => return Err(UnbalancedQuotes),
            Some(b'\\') if line.get(at + 1) == Some(&b'\'') => {
                token.push(b'\'');
                at += 2;
            }
            Some(b'\'') => return close_quote(line, at),
            Some(&b) => {
                token.push(b);
                at += 1;
            }
        }
    }
}
