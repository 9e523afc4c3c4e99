//! Finding where each reply from Redis ends (RESP2 and RESP3), so the reply
//! path can hand the bytes on without building a value.
//!
//! The scanner only measures: it checks lengths and counts, line endings and
//! nesting depth, and never copies or allocates per reply (its small stack of
//! open aggregates is reused). It does not validate the text of integers,
//! doubles or booleans (the upstream is trusted for content), does not decode
//! values, and does not support RESP3 streamed strings or aggregates (`$?`,
//! `*?`), which Redis never sends: they are reported as protocol errors.

use super::{parse_i64, ProtocolError};

/// Longest length header accepted before its `\r\n` (`$-9223372036854775808` is 21 bytes).
const MAX_LENGTH_HEADER: usize = 32;

/// One open aggregate: elements still expected, and whether it is an
/// attribute map (which, once complete, does not count as an element: the
/// value it annotates follows).
#[derive(Debug, Clone, Copy)]
struct Open {
    remaining: usize,
    attribute: bool,
}

/// Resumable reply scanner; one per upstream connection.
#[derive(Debug)]
pub struct ReplyScanner {
    max_depth: usize,
    /// Start of the next element not yet fully scanned.
    pos: usize,
    /// How far a search for the end of the current line already went.
    searched: usize,
    stack: Vec<Open>,
}

/// What one element did to the reply being scanned.
enum Element {
    /// A complete scalar (or empty/null aggregate) ending at this offset.
    Complete(usize),
    /// An aggregate header ending at this offset opened `Open`.
    Opened(usize, Open),
    /// An empty attribute ending at this offset: the annotated value follows.
    Nothing(usize),
}

impl ReplyScanner {
    /// `max_depth` bounds aggregate nesting: a reply with more than
    /// `max_depth` aggregates open at once is an error.
    pub fn new(max_depth: usize) -> Self {
        ReplyScanner {
            max_depth,
            pos: 0,
            searched: 0,
            stack: Vec::new(),
        }
    }

    /// Length in bytes of the one complete reply at the front of `buf`, or None if more bytes are needed.
    ///
    /// Resumable: calling again with the same buffer grown at its end continues from where the
    /// last call stopped. After returning `Some(len)` the scanner is reset for the next reply (the
    /// caller advances its buffer by `len`). An attribute map and the reply it annotates are one
    /// reply. After an error the connection must be dropped; the scanner is reset.
    pub fn scan(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        if self.pos > buf.len() {
            // The buffer shrank (not the same buffer): start over.
            self.reset();
        }
        loop {
            let element = match self.element(buf) {
                Ok(Some(element)) => element,
                Ok(None) => return Ok(None),
                Err(error) => {
                    self.reset();
                    return Err(error);
                }
            };
            self.searched = 0;
            match element {
                Element::Complete(end) => {
                    self.pos = end;
                    if self.complete_one() {
                        self.reset();
                        return Ok(Some(end));
                    }
                }
                Element::Opened(end, open) => {
                    if self.stack.len() >= self.max_depth {
                        self.reset();
                        return Err(ProtocolError(format!(
                            "reply nested deeper than {}",
                            self.max_depth
                        )));
                    }
                    self.pos = end;
                    self.stack.push(open);
                }
                Element::Nothing(end) => self.pos = end,
            }
        }
    }

    fn reset(&mut self) {
        self.pos = 0;
        self.searched = 0;
        self.stack.clear();
    }

    /// Count one finished element against the open aggregates; true when the whole reply is done.
    fn complete_one(&mut self) -> bool {
        while let Some(top) = self.stack.last_mut() {
            top.remaining -= 1;
            if top.remaining > 0 {
                return false;
            }
            let attribute = top.attribute;
            self.stack.pop();
            if attribute {
                return false;
            }
        }
        true
    }

    /// Scan the element starting at `self.pos`.
    fn element(&mut self, buf: &[u8]) -> Result<Option<Element>, ProtocolError> {
        let pos = self.pos;
        let Some(&kind) = buf.get(pos) else {
            return Ok(None);
        };
        match kind {
            b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => {
                if self.searched == 0 {
                    if let Some(end) = short_line(buf, pos) {
                        return Ok(Some(Element::Complete(end)));
                    }
                }
                Ok(self.line_end(buf)?.map(Element::Complete))
            }
            b'$' | b'!' | b'=' => blob(buf, pos, kind),
            b'*' | b'~' | b'>' | b'%' | b'|' => aggregate(buf, pos, kind),
            other => Err(ProtocolError(format!(
                "unexpected reply type byte 0x{other:02x}"
            ))),
        }
    }

    /// End (just past `\r\n`) of the line starting at `self.pos`, resuming an earlier search.
    fn line_end(&mut self, buf: &[u8]) -> Result<Option<usize>, ProtocolError> {
        let from = self.searched.max(self.pos + 1);
        let Some(lf) = buf.get(from..).and_then(|rest| memchr::memchr(b'\n', rest)) else {
            self.searched = buf.len();
            return Ok(None);
        };
        let lf = from + lf;
        // `from` is past the type byte, so the byte before the '\n' belongs to the line.
        match buf.get(lf - 1) {
            Some(b'\r') => Ok(Some(lf + 1)),
            _ => Err(ProtocolError::new("expected CRLF in reply")),
        }
    }
}

/// Read the length header at `pos`: its value and the offset just past its `\r\n`.
#[inline]
fn length_header(buf: &[u8], pos: usize) -> Result<Option<(i64, usize)>, ProtocolError> {
    match short_length(buf, pos) {
        Some(found) => Ok(Some(found)),
        None => any_length(buf, pos),
    }
}

/// The common header, a few digits in their shortest form (or the null's `-1`) and
/// `\r\n`, read in one pass (~80 instructions fewer per GET reply than the search for
/// the line end and the general parse). `None` for anything else, complete or not:
/// [`any_length`] reads it, the same value wherever this gives one.
#[inline(always)]
fn short_length(buf: &[u8], pos: usize) -> Option<(i64, usize)> {
    let rest = buf.get(pos + 1..)?;
    let digit = |b: u8| {
        b.is_ascii_digit()
            .then_some(i64::from(b.wrapping_sub(b'0')))
    };
    // Up to three digits (and the null's `-1`, a GET of a missing key) matched whole.
    match *rest {
        [b'-', b'1', b'\r', b'\n', ..] => return Some((-1, pos + 5)),
        [d, b'\r', b'\n', ..] => return Some((digit(d)?, pos + 4)),
        [d1 @ b'1'..=b'9', d2, b'\r', b'\n', ..] => {
            return Some((i64::from(d1 - b'0') * 10 + digit(d2)?, pos + 5))
        }
        [d1 @ b'1'..=b'9', d2, d3, b'\r', b'\n', ..] => {
            return Some((
                (i64::from(d1 - b'0') * 10 + digit(d2)?) * 10 + digit(d3)?,
                pos + 6,
            ))
        }
        _ => {}
    }
    let mut value = 0i64;
    let mut end = 0;
    while let Some(&b) = rest.get(end).filter(|b| b.is_ascii_digit()) {
        if end == 18 {
            return None;
        }
        value = value * 10 + i64::from(b - b'0');
        end += 1;
    }
    let shortest = end == 1 || (end > 1 && rest[0] != b'0');
    (shortest && rest.get(end..end + 2) == Some(b"\r\n")).then_some((value, pos + 1 + end + 2))
}

/// The end of a short line at `pos` (`+OK`, `:1`): its `\r\n` within the first 16 bytes,
/// found without a call to memchr (~40 instructions per SET reply). `None` for anything
/// else, complete or not: [`ReplyScanner::line_end`] decides it, the same end wherever
/// this gives one.
#[inline]
fn short_line(buf: &[u8], pos: usize) -> Option<usize> {
    let rest = buf.get(pos + 1..)?;
    let window = rest.get(..16).unwrap_or(rest);
    let lf = window.iter().position(|&b| b == b'\n')?;
    (lf > 0 && window[lf - 1] == b'\r').then_some(pos + 1 + lf + 1)
}

/// [`length_header`] for any header: a sign, too many digits, or cut short.
fn any_length(buf: &[u8], pos: usize) -> Result<Option<(i64, usize)>, ProtocolError> {
    let rest = buf.get(pos + 1..).unwrap_or_default();
    let window = rest.get(..MAX_LENGTH_HEADER).unwrap_or(rest);
    let Some(lf) = memchr::memchr(b'\n', window) else {
        if rest.len() >= MAX_LENGTH_HEADER {
            return Err(ProtocolError::new("too big length in reply"));
        }
        return Ok(None);
    };
    let text = match lf.checked_sub(1).and_then(|cr| Some((cr, *rest.get(cr)?))) {
        Some((cr, b'\r')) => rest.get(..cr).unwrap_or_default(),
        _ => return Err(ProtocolError::new("expected CRLF in reply")),
    };
    match parse_i64(text) {
        Some(n) if n >= -1 => Ok(Some((n, pos + 1 + lf + 1))),
        _ => Err(ProtocolError::new("invalid length in reply")),
    }
}

/// A length-prefixed string: `$` (which may be the null `$-1`), `!` or `=`.
fn blob(buf: &[u8], pos: usize, kind: u8) -> Result<Option<Element>, ProtocolError> {
    let Some((len, start)) = length_header(buf, pos)? else {
        return Ok(None);
    };
    let Ok(len) = usize::try_from(len) else {
        return match kind {
            b'$' => Ok(Some(Element::Complete(start))),
            _ => Err(ProtocolError::new("invalid length in reply")),
        };
    };
    let end = start.saturating_add(len);
    match buf.get(end..end.saturating_add(2)) {
        None => Ok(None),
        Some(b"\r\n") => Ok(Some(Element::Complete(end + 2))),
        Some(_) => Err(ProtocolError::new("expected CRLF after bulk in reply")),
    }
}

/// An aggregate header: `*` (which may be the null `*-1`), `~`, `>`, `%` or `|`.
fn aggregate(buf: &[u8], pos: usize, kind: u8) -> Result<Option<Element>, ProtocolError> {
    let Some((count, end)) = length_header(buf, pos)? else {
        return Ok(None);
    };
    let Ok(count) = usize::try_from(count) else {
        return match kind {
            b'*' => Ok(Some(Element::Complete(end))),
            _ => Err(ProtocolError::new("invalid length in reply")),
        };
    };
    let pairs = matches!(kind, b'%' | b'|');
    let Some(remaining) = count.checked_mul(if pairs { 2 } else { 1 }) else {
        return Err(ProtocolError::new("invalid length in reply"));
    };
    let attribute = kind == b'|';
    Ok(Some(match (remaining, attribute) {
        (0, true) => Element::Nothing(end),
        (0, false) => Element::Complete(end),
        _ => Element::Opened(
            end,
            Open {
                remaining,
                attribute,
            },
        ),
    }))
}

/// True when this complete frame is a RESP3 push (`>`), the out-of-band frames of pub/sub and
/// client tracking. A push annotated by an attribute map counts too.
pub fn is_push(frame: &[u8]) -> bool {
    let mut rest = frame;
    while rest.first() == Some(&b'|') {
        let Ok(Some((count, start))) = length_header(rest, 0) else {
            return false;
        };
        rest = rest.get(start..).unwrap_or_default();
        for _ in 0..count.saturating_mul(2) {
            let Ok(Some(len)) = ReplyScanner::new(64).scan(rest) else {
                return false;
            };
            rest = rest.get(len..).unwrap_or_default();
        }
    }
    rest.first() == Some(&b'>')
}

#[cfg(test)]
mod length_tests {
    use super::*;
    use crate::resp::tests::every_text;

    /// Every line over a small alphabet, complete or cut short: wherever the short read
    /// answers, the general search ends the line at the same place.
    #[test]
    fn short_line_agrees_with_the_general_search() {
        let mut checked = 0;
        for text in every_text(b'+', b"+OK1\r\n", 8) {
            if let Some(end) = short_line(&text, 0) {
                let mut scanner = ReplyScanner::new(4);
                assert_eq!(scanner.line_end(&text), Ok(Some(end)), "{text:?}");
                checked += 1;
            }
        }
        assert!(checked > 100, "only {checked} lines took the short read");
        // A line longer than the window is left to the search.
        let long = b"+0123456789abcdefghij\r\n";
        assert_eq!(short_line(long, 0), None);
        assert_eq!(ReplyScanner::new(4).line_end(long), Ok(Some(long.len())));
    }

    /// Every header over a small alphabet, complete or cut short: wherever the one-pass
    /// read answers, the general one reads the same value and end.
    #[test]
    fn short_length_agrees_with_the_general_read() {
        let mut checked = 0;
        for text in every_text(b'$', b"0129-\r\n$x", 7) {
            if let Some(found) = short_length(&text, 0) {
                assert_eq!(any_length(&text, 0), Ok(Some(found)), "{text:?}");
                checked += 1;
            }
        }
        assert!(
            checked > 100,
            "only {checked} headers took the one-pass read"
        );
        // 19 digits are left to the general read, which checks for overflow.
        let long = b"$1234567890123456789\r\n";
        assert_eq!(short_length(long, 0), None);
        assert_eq!(
            any_length(long, 0),
            Ok(Some((1234567890123456789, long.len())))
        );
    }
}
