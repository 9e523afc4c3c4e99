//! Decoding client requests: RESP multibulk arrays and inline command lines.
//!
//! The split follows Redis 7.0's `processMultibulkBuffer` and
//! `processInlineBuffer` byte for byte, error texts included. That matters for
//! a proxy: the bytes of a multibulk request go upstream untouched, so the
//! sidecar must see exactly the arguments Redis will see, or policy and
//! namespacing could be checked against a different command than the one run.
//! Hence the quirks kept on purpose: a header line ends at its first `\r` and
//! the byte after it is skipped unchecked, and so are the two bytes after a
//! bulk's payload; `*0` and negative counts are skipped; an inline line stops
//! at a NUL byte and never completes (Redis's `strchr`), until it is too big.
//!
//! This module does not know command names, arity or keys (that is `command`),
//! and never reads a socket.

use bytes::{Buf, Bytes, BytesMut};
use smallvec::SmallVec;

use super::inline::split_args;
use super::{parse_i64, put_header, ProtocolError};

/// Longest `*<count>` or `$<len>` header line accepted before its `\r`.
const MAX_HEADER_LEN: usize = 1024;
/// Longest array read by the one-pass path (`SET key value EX n NX` and shorter).
const FAST_ARGS: usize = 8;
/// Most argument slots allocated up front, whatever count the wire announces.
const PREALLOC_ARGS: usize = 1024;
/// Redis refuses multibulk counts above `INT_MAX` whatever its limits say.
const REDIS_MAX_ARRAY_LEN: usize = i32::MAX as usize;

/// Bounds on one request, checked before anything is buffered or allocated.
#[derive(Debug, Clone, Copy)]
pub struct RequestLimits {
    /// Largest bulk argument (Redis's `proto-max-bulk-len`).
    pub max_bulk_len: usize,
    /// Most arguments in one multibulk request.
    pub max_array_len: usize,
    /// Longest inline command line (Redis's `PROTO_INLINE_MAX_SIZE`, 64 KiB).
    pub max_inline_len: usize,
}

/// A request's arguments. The commonest commands, `GET key` and `SET key value`, keep them
/// inline without an allocation. Measured in user-space instructions per request at
/// -P 16: room for 3 instead of 2 saves a SET about 300 (a pipeline's worth of args
/// vectors went through malloc's slow path) and costs a GET about 50 (a larger
/// `Request` is moved with memcpy calls); room for 5 cost more in copies than it saved.
pub type Args = SmallVec<[Bytes; 3]>;

/// One command from a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The command exactly as it must go upstream: the client's RESP bytes untouched, or an inline command re-encoded as a RESP array of bulk strings.
    pub raw: Bytes,
    /// The arguments, command name first; zero-copy slices of `raw`, except the names
    /// of the commonest commands, which are the same bytes from static memory.
    pub args: Args,
}

impl Request {
    /// Build a request from arguments (encodes `raw`; used when the sidecar rewrites a command).
    pub fn from_args(args: Vec<Bytes>) -> Request {
        let mut raw =
            BytesMut::with_capacity(16 + args.iter().map(|a| a.len() + 16).sum::<usize>());
        put_header(&mut raw, b'*', args.len());
        let mut spans = Vec::with_capacity(args.len());
        for arg in &args {
            put_header(&mut raw, b'$', arg.len());
            spans.push((raw.len(), arg.len()));
            raw.extend_from_slice(arg);
            raw.extend_from_slice(b"\r\n");
        }
        let raw = raw.freeze();
        let args = spans
            .iter()
            .map(|&(at, len)| raw.slice(at..at + len))
            .collect();
        Request { raw, args }
    }

    /// The request with `prefix` put in front of the arguments at `indices` (namespace
    /// key rewriting): one buffer for the new bytes, the arguments sliced from it.
    pub fn with_prefix(&self, prefix: &[u8], indices: &[usize]) -> Request {
        let mut raw = BytesMut::with_capacity(
            16 + self.args.iter().map(|a| a.len() + 16).sum::<usize>()
                + prefix.len() * indices.len(),
        );
        let mut spans = Vec::with_capacity(self.args.len());
        encode_prefixed(&self.args, prefix, indices, &mut raw, |at, len| {
            spans.push((at, len))
        });
        let raw = raw.freeze();
        let args = spans
            .iter()
            .map(|&(at, len)| raw.slice(at..at + len))
            .collect();
        Request { raw, args }
    }

    /// The command name (`args[0]`); empty slice if none.
    pub fn name(&self) -> &[u8] {
        self.args.first().map_or(&[], |name| name.as_ref())
    }
}

/// Where the decoder stands inside the frame at the front of the buffer.
#[derive(Debug)]
enum State {
    /// Nothing of the next frame examined yet.
    Start,
    /// An inline line: `scanned` bytes searched without finding its end;
    /// `stuck` once a NUL was met (the line can then only grow too big).
    Inline { scanned: usize, stuck: bool },
    /// A multibulk array: `pos` is where unread bytes start, `remaining` how
    /// many bulks are still to come, `bulk_len` the announced length of the
    /// bulk whose header is already read.
    Multibulk {
        pos: usize,
        remaining: usize,
        bulk_len: Option<usize>,
    },
}

/// Resumable request decoder; one per client connection.
#[derive(Debug)]
pub struct RequestDecoder {
    limits: RequestLimits,
    state: State,
    /// (offset, length) of each argument read so far in the current array.
    spans: Vec<(usize, usize)>,
}

/// The commonest command names, byte for byte as clients send them, as static `Bytes`:
/// a slice of the request's bytes costs an atomic increment when made and a decrement
/// when dropped (two of the six a `GET key` took), a static one neither.
fn static_name(name: &[u8]) -> Option<Bytes> {
    let name: &[u8; 3] = name.try_into().ok()?;
    Some(Bytes::from_static(match name {
        b"GET" => b"GET",
        b"get" => b"get",
        b"SET" => b"SET",
        b"set" => b"set",
        _ => return None,
    }))
}

/// Where [`RequestDecoder::peek_get`] found a `GET key`: its name and key as ranges
/// of the buffer, and the whole frame's length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeekedGet {
    pub name: std::ops::Range<usize>,
    pub key: std::ops::Range<usize>,
    pub len: usize,
}

/// Outcome of one step on the frame at the front of the buffer.
enum Step {
    Done(Request),
    /// A frame without arguments was consumed; go on with the next one.
    Skipped,
    NeedMore,
}

impl RequestDecoder {
    pub fn new(limits: RequestLimits) -> Self {
        RequestDecoder {
            limits,
            state: State::Start,
            spans: Vec::new(),
        }
    }

    /// Decode the next complete request at the front of `buf`, splitting its bytes off `buf` (split_to + freeze: zero copy).
    ///
    /// `Ok(None)`: need more bytes; the incomplete frame in `buf` is untouched and the decoder keeps
    /// its progress, so the next call (with the same buffer grown at its end) resumes where it
    /// stopped instead of re-scanning: an array of 10k arguments or a 5 MB bulk arriving in many
    /// reads costs linear time. Empty inline lines and `*0` / `*-1` arrays are consumed and
    /// skipped, as Redis does (so they may have been split off `buf` even when `None` is returned).
    /// After an error the connection must be closed; the decoder is reset.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Request>, ProtocolError> {
        if let State::Start = self.state {
            if let Some(request) = self.whole_small_array(buf) {
                return Ok(Some(request));
            }
        }
        loop {
            let step = match self.state {
                State::Start => self.start(buf),
                State::Inline { scanned, stuck } => self.inline(buf, scanned, stuck),
                State::Multibulk {
                    pos,
                    remaining,
                    bulk_len,
                } => self.multibulk(buf, pos, remaining, bulk_len),
            };
            match step {
                Ok(Step::Done(request)) => return Ok(Some(request)),
                Ok(Step::Skipped) => continue,
                Ok(Step::NeedMore) => return Ok(None),
                Err(error) => {
                    self.reset();
                    return Err(error);
                }
            }
        }
    }

    /// The common case in one pass: a whole array of at most [`FAST_ARGS`] bulks, every
    /// header plain digits (see [`small_header`]), already buffered. Anything else is
    /// `None` with nothing consumed, and the general path decides; where this one gives a
    /// request, the general path gives the same.
    fn whole_small_array(&self, buf: &mut BytesMut) -> Option<Request> {
        let (count, mut pos) = small_header(buf, 0, b'*')?;
        if count == 0 || count > FAST_ARGS || count > self.limits.max_array_len {
            return None;
        }
        let mut spans = [(0usize, 0usize); FAST_ARGS];
        for span in spans.iter_mut().take(count) {
            let (len, at) = small_header(buf, pos, b'$')?;
            if len > self.limits.max_bulk_len {
                return None;
            }
            let next = at.checked_add(len)?.checked_add(2)?;
            if next > buf.len() {
                return None;
            }
            *span = (at, len);
            pos = next;
        }
        let raw = buf.split_to(pos).freeze();
        let mut args = Args::new();
        let (at, len) = spans[0];
        args.push(static_name(&raw[at..at + len]).unwrap_or_else(|| raw.slice(at..at + len)));
        for &(at, len) in &spans[1..count] {
            args.push(raw.slice(at..at + len));
        }
        Some(Request { raw, args })
    }

    /// A whole `GET key` at the front of `buf`, in the plain form every client library
    /// sends (`*2`, `$3`, any case of `GET`, the key): where its name and key lie and how
    /// long it is. Read in place, without splitting it off, so a client loop can answer a
    /// cache hit with no request built (see `Client::hits_in_place`). `None` for
    /// anything else, or with a frame begun and not finished; [`Self::decode`] then
    /// takes it as usual, and gives the same request wherever this gives one.
    pub fn peek_get(&self, buf: &[u8]) -> Option<PeekedGet> {
        // `*2\r\n$3\r\nGET\r\n` (the name in any case) in two comparisons; anything else
        // is left to `decode`. Setting bit 5 lower-cases a letter, and only `G`/`g`,
        // `E`/`e` and `T`/`t` become `g`, `e` and `t`.
        const HEAD: u64 = u64::from_ne_bytes(*b"*2\r\n$3\r\n");
        const NAME: u64 = u64::from_ne_bytes(*b"get\r\n\0\0\0");
        const CASE: u64 = u64::from_ne_bytes([0x20, 0x20, 0x20, 0, 0, 0, 0, 0]);
        const MASK: u64 = u64::from_ne_bytes([0xff, 0xff, 0xff, 0xff, 0xff, 0, 0, 0]);
        let word = |at: usize| buf.get(at..at + 8).and_then(|w| w.first_chunk::<8>());
        let (Some(head), Some(name)) = (word(0), word(8)) else {
            return None;
        };
        if u64::from_ne_bytes(*head) != HEAD
            || (u64::from_ne_bytes(*name) | CASE) & MASK != NAME
            || !matches!(self.state, State::Start)
            || self.limits.max_array_len < 2
        {
            return None;
        }
        let (len, key) = small_header(buf, 13, b'$')?;
        if len > self.limits.max_bulk_len || key + len + 2 > buf.len() {
            return None;
        }
        Some(PeekedGet {
            name: 8..11,
            key: key..key + len,
            len: key + len + 2,
        })
    }

    fn reset(&mut self) {
        self.state = State::Start;
        self.spans.clear();
        if self.spans.capacity() > PREALLOC_ARGS {
            self.spans = Vec::new();
        }
    }

    /// Look at the first byte: `*` opens a multibulk array, anything else an inline line.
    fn start(&mut self, buf: &mut BytesMut) -> Result<Step, ProtocolError> {
        match buf.first() {
            None => Ok(Step::NeedMore),
            Some(b'*') => {
                let (count, pos) = match small_header(buf, 0, b'*') {
                    Some((count, pos)) => (i64::try_from(count).ok(), pos),
                    None => {
                        let Some((count, pos)) = header(buf, 0, "too big mbulk count string")?
                        else {
                            return Ok(Step::NeedMore);
                        };
                        (parse_i64(count), pos)
                    }
                };
                let count = count.filter(|&n| n <= REDIS_MAX_ARRAY_LEN as i64);
                let Some(count) = count else {
                    return Err(ProtocolError::new("invalid multibulk length"));
                };
                if count <= 0 {
                    buf.advance(pos);
                    return Ok(Step::Skipped);
                }
                let remaining = usize::try_from(count).unwrap_or(usize::MAX);
                if remaining > self.limits.max_array_len {
                    return Err(ProtocolError::new("invalid multibulk length"));
                }
                self.spans.clear();
                self.spans.reserve(remaining.min(PREALLOC_ARGS));
                self.state = State::Multibulk {
                    pos,
                    remaining,
                    bulk_len: None,
                };
                Ok(Step::Skipped)
            }
            Some(_) => {
                self.state = State::Inline {
                    scanned: 0,
                    stuck: false,
                };
                Ok(Step::Skipped)
            }
        }
    }

    /// Read bulks until the array is complete or the buffer runs out.
    fn multibulk(
        &mut self,
        buf: &mut BytesMut,
        mut pos: usize,
        mut remaining: usize,
        mut bulk_len: Option<usize>,
    ) -> Result<Step, ProtocolError> {
        if pos > buf.len() {
            // The caller broke the contract (the buffer shrank): start the frame over.
            self.reset();
            return Ok(Step::Skipped);
        }
        while remaining > 0 {
            let len = match bulk_len {
                Some(len) => len,
                None => match self.bulk_header(buf, pos)? {
                    Some((len, next)) => {
                        pos = next;
                        len
                    }
                    None => break,
                },
            };
            if buf.len() - pos < len.saturating_add(2) {
                bulk_len = Some(len);
                break;
            }
            self.spans.push((pos, len));
            pos += len + 2;
            bulk_len = None;
            remaining -= 1;
        }
        if remaining > 0 {
            self.state = State::Multibulk {
                pos,
                remaining,
                bulk_len,
            };
            return Ok(Step::NeedMore);
        }
        let raw = buf.split_to(pos).freeze();
        let args = self
            .spans
            .iter()
            .map(|&(at, len)| raw.slice(at..at + len))
            .collect();
        self.reset();
        Ok(Step::Done(Request { raw, args }))
    }

    /// Read a `$<len>` header at `pos`: the bulk's length and where its payload starts.
    fn bulk_header(&self, buf: &[u8], pos: usize) -> Result<Option<(usize, usize)>, ProtocolError> {
        if let Some((len, next)) = small_header(buf, pos, b'$') {
            if len <= self.limits.max_bulk_len {
                return Ok(Some((len, next)));
            }
        }
        let Some((text, next)) = header(buf, pos, "too big bulk count string")? else {
            return Ok(None);
        };
        let kind = buf.get(pos).copied().unwrap_or(b' ');
        if kind != b'$' {
            return Err(ProtocolError(format!(
                "expected '$', got '{}'",
                printable(kind)
            )));
        }
        match parse_i64(text).and_then(|n| usize::try_from(n).ok()) {
            Some(len) if len <= self.limits.max_bulk_len => Ok(Some((len, next))),
            _ => Err(ProtocolError::new("invalid bulk length")),
        }
    }

    /// Find the end of an inline line and split it; skip it if it holds no argument.
    fn inline(
        &mut self,
        buf: &mut BytesMut,
        scanned: usize,
        stuck: bool,
    ) -> Result<Step, ProtocolError> {
        let max = self.limits.max_inline_len;
        let found = if stuck {
            None
        } else {
            buf.get(scanned..)
                .and_then(|rest| memchr::memchr2(b'\n', 0, rest))
        };
        let newline = match found.map(|i| scanned + i) {
            Some(at) if buf.get(at) == Some(&b'\n') => at,
            found => {
                if buf.len() > max {
                    return Err(ProtocolError::new("too big inline request"));
                }
                self.state = State::Inline {
                    scanned: buf.len(),
                    stuck: stuck || found.is_some(),
                };
                return Ok(Step::NeedMore);
            }
        };
        // The line's length counts its optional '\r', so the limit is the same
        // whether the newline arrives in the same read or a later one.
        if newline > max {
            return Err(ProtocolError::new("too big inline request"));
        }
        let end = if newline > 0 && buf.get(newline - 1) == Some(&b'\r') {
            newline - 1
        } else {
            newline
        };
        let args = buf.get(..end).map(split_args).unwrap_or(Ok(Vec::new()));
        let args = args.map_err(|_| ProtocolError::new("unbalanced quotes in request"))?;
        buf.advance(newline + 1);
        self.reset();
        if args.is_empty() {
            return Ok(Step::Skipped);
        }
        Ok(Step::Done(Request::from_args(
            args.into_iter().map(Bytes::from).collect(),
        )))
    }
}

/// Find the header line starting at `pos` (its type byte included) the way Redis does:
/// it ends at the first `\r`, which must be followed by at least one more byte (skipped
/// unchecked). Returns the text between the type byte and the `\r`, and where the next
/// frame part starts; `None` when more bytes are needed.
fn header<'a>(
    buf: &'a [u8],
    pos: usize,
    too_big: &str,
) -> Result<Option<(&'a [u8], usize)>, ProtocolError> {
    let rest = buf.get(pos..).unwrap_or_default();
    let window = rest.get(..MAX_HEADER_LEN + 2).unwrap_or(rest);
    match memchr::memchr(b'\r', window) {
        Some(cr) if cr > MAX_HEADER_LEN => Err(ProtocolError::new(too_big)),
        Some(cr) if cr + 1 < rest.len() => {
            Ok(Some((rest.get(1..cr).unwrap_or_default(), pos + cr + 2)))
        }
        Some(_) => Ok(None),
        None if rest.len() > MAX_HEADER_LEN => Err(ProtocolError::new(too_big)),
        None => Ok(None),
    }
}

/// The common header, `<kind><digits>\r` and the byte after it buffered, read without a
/// search: a number without sign or leading zero and at most 17 digits. Anything else
/// (another kind, a sign, a longer or incomplete header) is `None` and takes the general
/// path through [`header`] and `parse_i64`, which reads the same value wherever this
/// function gives one.
#[inline(always)]
fn small_header(buf: &[u8], pos: usize, kind: u8) -> Option<(usize, usize)> {
    let rest = buf.get(pos..)?;
    // One or two digits, nearly every header (`*2`, `$3`, `$16`), matched whole: ~20
    // instructions fewer per header than the digit loop below (cachegrind).
    let digit = |b: u8| {
        b.is_ascii_digit()
            .then_some(usize::from(b.wrapping_sub(b'0')))
    };
    match *rest {
        [k, d, b'\r', _, ..] if k == kind => return Some((digit(d)?, pos + 4)),
        [k, d1 @ b'1'..=b'9', d2, b'\r', _, ..] if k == kind => {
            return Some((usize::from(d1 - b'0') * 10 + digit(d2)?, pos + 5))
        }
        _ => {}
    }
    if rest.first() != Some(&kind) {
        return None;
    }
    let mut value = 0usize;
    let mut end = 1;
    while let Some(&b) = rest.get(end).filter(|b| b.is_ascii_digit()) {
        if end > 17 {
            return None;
        }
        value = value * 10 + usize::from(b - b'0');
        end += 1;
    }
    let digits = end - 1;
    let leading_zero = digits > 1 && rest.get(1) == Some(&b'0');
    if digits == 0 || leading_zero || rest.get(end) != Some(&b'\r') || end + 1 >= rest.len() {
        return None;
    }
    Some((value, pos + end + 2))
}

/// The byte as Redis's `%c` would show it once its error sanitiser has replaced CR/LF.
fn printable(b: u8) -> char {
    match b {
        b'\r' | b'\n' => ' ',
        b if b.is_ascii() => char::from(b),
        _ => '?',
    }
}

/// Append `args` as a RESP command to `out`, with `prefix` in front of the arguments at
/// `indices`; `span(at, len)` is told where each argument landed in `out`. The shared
/// path writes rewritten commands straight into the outgoing buffer this way.
pub fn encode_prefixed(
    args: &[Bytes],
    prefix: &[u8],
    indices: &[usize],
    out: &mut BytesMut,
    mut span: impl FnMut(usize, usize),
) {
    let marks: Vec<bool> = if indices.len() > 8 {
        let mut marks = vec![false; args.len()];
        for &i in indices {
            if let Some(m) = marks.get_mut(i) {
                *m = true;
            }
        }
        marks
    } else {
        Vec::new()
    };
    let marked = |i: usize| {
        if marks.is_empty() {
            indices.contains(&i)
        } else {
            marks[i]
        }
    };
    put_header(out, b'*', args.len());
    for (i, arg) in args.iter().enumerate() {
        let extra = if marked(i) { prefix } else { &[][..] };
        put_header(out, b'$', extra.len() + arg.len());
        span(out.len(), extra.len() + arg.len());
        out.extend_from_slice(extra);
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// Append `req` to `out` with `prefix` in front of the arguments at `indices` (ascending),
/// copying the request's own bytes around the keys and writing new headers only for the
/// keys. Falls back to [`encode_prefixed`] when the bytes are not laid out as a bulk
/// header right before each key.
pub fn write_prefixed(req: &Request, prefix: &[u8], indices: &[usize], out: &mut BytesMut) {
    let raw: &[u8] = &req.raw;
    // Copied up to here; a key's own bytes go out with what follows it.
    let mut last = 0;
    let mark = out.len();
    for &i in indices {
        let Some((header_start, start, len)) = key_splice(req, i, last) else {
            out.truncate(mark);
            encode_prefixed(&req.args, prefix, indices, out, |_, _| {});
            return;
        };
        out.extend_from_slice(&raw[last..header_start]);
        put_header(out, b'$', prefix.len() + len);
        out.extend_from_slice(prefix);
        last = start;
    }
    out.extend_from_slice(&raw[last..]);
}

/// [`write_prefixed`] for a request with one key, at `index`: the same bytes.
pub fn write_prefixed_key(req: &Request, prefix: &[u8], index: usize, out: &mut BytesMut) {
    let raw: &[u8] = &req.raw;
    let Some((header_start, start, len)) = key_splice(req, index, 0) else {
        return encode_prefixed(&req.args, prefix, &[index], out, |_, _| {});
    };
    out.extend_from_slice(&raw[..header_start]);
    put_header(out, b'$', prefix.len() + len);
    out.extend_from_slice(prefix);
    out.extend_from_slice(&raw[start..]);
}

/// Where argument `i` of `req` lies in its bytes, for a splice: its bulk header's start
/// (at or after `from`), its own start and its length. `None` when it is not laid out
/// as a shortest-form bulk string in `req.raw` (then the request is encoded afresh).
#[inline(always)]
fn key_splice(req: &Request, i: usize, from: usize) -> Option<(usize, usize, usize)> {
    let raw: &[u8] = &req.raw;
    let arg = req.args.get(i)?;
    let start = (arg.as_ptr() as usize).checked_sub(raw.as_ptr() as usize)?;
    if start + arg.len() + 2 > raw.len() {
        return None;
    }
    Some((
        header_before(raw, from, start, arg.len())?,
        start,
        arg.len(),
    ))
}

/// Where the bulk header `$<len>\r\n` that ends at `end` starts, if it is there, in its
/// shortest form, and starts at or after `from`.
#[inline(always)]
fn header_before(raw: &[u8], from: usize, end: usize, len: usize) -> Option<usize> {
    let digits = match len {
        0..=9 => 1,
        10..=99 => 2,
        100..=999 => 3,
        _ => len.ilog10() as usize + 1,
    };
    let header_start = end.checked_sub(digits + 3)?;
    if header_start < from || raw[header_start] != b'$' || raw[end - 2..end] != *b"\r\n" {
        return None;
    }
    let mut value = 0usize;
    for &digit in &raw[header_start + 1..end - 2] {
        if !digit.is_ascii_digit() {
            return None;
        }
        value = value
            .checked_mul(10)?
            .checked_add(usize::from(digit - b'0'))?;
    }
    (value == len).then_some(header_start)
}

#[cfg(test)]
mod small_header_tests {
    use super::*;
    use crate::resp::tests::every_text;

    /// Every header over a small alphabet, complete or cut short: wherever the fast path
    /// answers, the general path reads the same value and end.
    #[test]
    fn agrees_with_the_general_path() {
        let mut checked = 0;
        for text in every_text(b'$', b"019-\r\n$x", 7) {
            if let Some((value, end)) = small_header(&text, 0, b'$') {
                let (digits, next) = header(&text, 0, "too big")
                    .expect("a header the fast path reads is valid")
                    .expect("and complete");
                assert_eq!(parse_i64(digits), Some(value as i64), "{text:?}");
                assert_eq!(next, end, "{text:?}");
                checked += 1;
            }
        }
        assert!(checked > 100, "only {checked} headers took the fast path");
    }

    #[test]
    fn leaves_long_signed_and_zero_padded_numbers_to_the_general_path() {
        assert_eq!(small_header(b"$5\r\n", 0, b'$'), Some((5, 4)));
        assert_eq!(small_header(b"$0\r\n", 0, b'$'), Some((0, 4)));
        assert_eq!(small_header(b"$05\r\n", 0, b'$'), None);
        assert_eq!(small_header(b"$-1\r\n", 0, b'$'), None);
        assert_eq!(small_header(b"$5\r", 0, b'$'), None);
        assert_eq!(small_header(b"*5\r\n", 0, b'$'), None);
        let max = format!("${}\r\n", "9".repeat(17));
        assert_eq!(
            small_header(max.as_bytes(), 0, b'$'),
            Some((99_999_999_999_999_999, 20))
        );
        let longer = format!("${}\r\n", "9".repeat(18));
        assert_eq!(small_header(longer.as_bytes(), 0, b'$'), None);
    }
}
