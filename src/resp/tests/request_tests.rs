use bytes::{Bytes, BytesMut};

use crate::resp::{ProtocolError, Request, RequestDecoder, RequestLimits};

pub(super) fn limits() -> RequestLimits {
    RequestLimits {
        max_bulk_len: 512 * 1024 * 1024,
        max_array_len: 1 << 20,
        max_inline_len: 64 * 1024,
    }
}

/// Feed `chunks` one after the other, decoding everything possible after each.
fn decode_chunks(limits: RequestLimits, chunks: &[&[u8]]) -> Result<Vec<Request>, ProtocolError> {
    let mut decoder = RequestDecoder::new(limits);
    let mut buf = BytesMut::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(request) = decoder.decode(&mut buf)? {
            out.push(request);
        }
    }
    Ok(out)
}

fn decode_whole(input: &[u8]) -> Result<Vec<Request>, ProtocolError> {
    decode_chunks(limits(), &[input])
}

fn args_of(requests: &[Request]) -> Vec<Vec<Vec<u8>>> {
    requests
        .iter()
        .map(|r| r.args.iter().map(|a| a.to_vec()).collect())
        .collect()
}

fn error_text(input: &[u8], limits: RequestLimits) -> String {
    match decode_chunks(limits, &[input]) {
        Err(e) => e.to_string(),
        Ok(requests) => panic!("expected an error, decoded {:?}", args_of(&requests)),
    }
}

const PIPELINE: &[u8] = b"*3\r\n$3\r\nSET\r\n$3\r\nk\r\n\r\n$5\r\na\0\r\nb\r\n\
*0\r\n\
\r\n\
PING\r\n\
  \t \n\
*-1\r\n\
set \"a b\" 'c\\'d' \"\\x41\\r\\n\"\n\
*1\r\n$4\r\nPING\r\n\
*2\r\n$3\r\nGET\r\n$0\r\n\r\n\
ECHO hello\r\n";

fn pipeline_args() -> Vec<Vec<Vec<u8>>> {
    let v = |items: &[&[u8]]| items.iter().map(|i| i.to_vec()).collect::<Vec<_>>();
    vec![
        v(&[b"SET", b"k\r\n", b"a\0\r\nb"]),
        v(&[b"PING"]),
        v(&[b"set", b"a b", b"c'd", b"A\r\n"]),
        v(&[b"PING"]),
        v(&[b"GET", b""]),
        v(&[b"ECHO", b"hello"]),
    ]
}

#[test]
fn pipelined_mix_decodes_in_order() {
    let requests = decode_whole(PIPELINE).unwrap();
    assert_eq!(args_of(&requests), pipeline_args());
    // Multibulk requests go upstream byte for byte; inline ones are re-encoded.
    assert_eq!(&requests[0].raw[..], &PIPELINE[..33]);
    assert_eq!(&requests[3].raw[..], b"*1\r\n$4\r\nPING\r\n");
    assert_eq!(&requests[1].raw[..], b"*1\r\n$4\r\nPING\r\n");
    assert_eq!(
        &requests[2].raw[..],
        b"*4\r\n$3\r\nset\r\n$3\r\na b\r\n$3\r\nc'd\r\n$3\r\nA\r\n\r\n"
    );
    assert_eq!(requests[4].name(), b"GET");
}

#[test]
fn every_split_point_gives_the_same_requests() {
    let whole = decode_whole(PIPELINE).unwrap();
    for at in 0..=PIPELINE.len() {
        let (a, b) = PIPELINE.split_at(at);
        assert_eq!(
            decode_chunks(limits(), &[a, b]).unwrap(),
            whole,
            "split at {at}"
        );
    }
}

#[test]
fn one_byte_at_a_time_gives_the_same_requests() {
    let whole = decode_whole(PIPELINE).unwrap();
    let bytes: Vec<&[u8]> = PIPELINE.chunks(1).collect();
    assert_eq!(decode_chunks(limits(), &bytes).unwrap(), whole);
}

#[test]
fn args_are_slices_of_raw() {
    let requests = decode_whole(PIPELINE).unwrap();
    for request in &requests {
        let range = request.raw.as_ptr_range();
        for (i, arg) in request.args.iter().enumerate() {
            // The commonest names are static copies (no reference count on the buffer).
            let interned = i == 0 && [&b"GET"[..], b"get", b"SET", b"set"].contains(&&arg[..]);
            assert!(range.contains(&arg.as_ptr()) || arg.is_empty() || interned);
        }
    }
}

#[test]
fn common_names_are_static_and_keep_the_client_s_case() {
    let mut buf =
        BytesMut::from(&b"*2\r\n$3\r\nget\r\n$1\r\nk\r\n*2\r\n$3\r\nGeT\r\n$1\r\nk\r\n"[..]);
    let mut d = RequestDecoder::new(limits());
    let a = d.decode(&mut buf).unwrap().unwrap();
    let b = d.decode(&mut buf).unwrap().unwrap();
    assert_eq!((&a.args[0][..], &b.args[0][..]), (&b"get"[..], &b"GeT"[..]));
    // Lower and upper case are static; a mixed case stays a slice of the request.
    assert!(!a.raw.as_ptr_range().contains(&a.args[0].as_ptr()));
    assert!(b.raw.as_ptr_range().contains(&b.args[0].as_ptr()));
    assert_eq!(a.raw, Bytes::from_static(b"*2\r\n$3\r\nget\r\n$1\r\nk\r\n"));
}

#[test]
fn incomplete_input_leaves_the_buffer_untouched() {
    let mut decoder = RequestDecoder::new(limits());
    let mut buf = BytesMut::from(&b"*2\r\n$3\r\nGET\r\n$5\r\nab"[..]);
    assert_eq!(decoder.decode(&mut buf).unwrap(), None);
    assert_eq!(&buf[..], b"*2\r\n$3\r\nGET\r\n$5\r\nab");
    buf.extend_from_slice(b"cde\r\nPI");
    let request = decoder.decode(&mut buf).unwrap().unwrap();
    assert_eq!(
        request.args.as_slice(),
        [Bytes::from_static(b"GET"), Bytes::from_static(b"abcde")]
    );
    assert_eq!(&buf[..], b"PI");
    assert_eq!(decoder.decode(&mut buf).unwrap(), None);
}

#[test]
fn redis_quirks_are_kept() {
    // The two bytes after a bulk payload and the byte after a header's '\r' are not checked.
    let requests =
        decode_whole(b"*1\r\n$4\r\nPINGxxPING\r\n*1\rX$4\r\nPING\r\n*-5\r\nPING\n").unwrap();
    assert_eq!(args_of(&requests), vec![vec![b"PING".to_vec()]; 4]);
    // Quotes may open mid-token; \v is not a separator inside a token.
    let requests = decode_whole(b"ECHO ab'c d' x\x0by \"a\\x4\"\r\n").unwrap();
    assert_eq!(
        args_of(&requests),
        vec![vec![
            b"ECHO".to_vec(),
            b"abc d".to_vec(),
            b"x\x0by".to_vec(),
            b"ax4".to_vec()
        ]]
    );
    // An inline line stops at NUL and never completes (Redis's strchr).
    assert_eq!(decode_whole(b"PING\0\r\nPING\r\n").unwrap(), vec![]);
}

#[test]
fn protocol_errors_have_redis_texts() {
    let cases: &[(&[u8], &str)] = &[
        (b"*x\r\n", "invalid multibulk length"),
        (b"*\r\n", "invalid multibulk length"),
        (b"*01\r\n", "invalid multibulk length"),
        (b"*+1\r\n", "invalid multibulk length"),
        (b"*2147483648\r\n", "invalid multibulk length"),
        (b"*1\r\n$-1\r\n", "invalid bulk length"),
        (b"*1\r\n$04\r\nPING\r\n", "invalid bulk length"),
        (b"*1\r\n$\r\nx", "invalid bulk length"),
        (b"*1\r\nx\r\n", "expected '$', got 'x'"),
        (b"*1\r\n\r\n", "expected '$', got ' '"),
        (b"*1\r\n:1\r\n", "expected '$', got ':'"),
        (b"ECHO \"abc\r\n", "unbalanced quotes in request"),
        (b"ECHO \"a\"b\r\n", "unbalanced quotes in request"),
        (b"ECHO 'a'b\r\n", "unbalanced quotes in request"),
        (b"ECHO 'abc\r\n", "unbalanced quotes in request"),
        (b"ECHO \"a\\\r\n", "unbalanced quotes in request"),
    ];
    for (input, detail) in cases {
        assert_eq!(
            error_text(input, limits()),
            format!("Protocol error: {detail}"),
            "{input:?}"
        );
    }
}

#[test]
fn limits_are_enforced() {
    let small = RequestLimits {
        max_bulk_len: 4,
        max_array_len: 2,
        max_inline_len: 10,
    };
    assert_eq!(
        decode_chunks(small, &[b"*2\r\n$4\r\nabcd\r\n$0\r\n\r\n"])
            .unwrap()
            .len(),
        1
    );
    assert_eq!(
        error_text(b"*1\r\n$5\r\n", small),
        "Protocol error: invalid bulk length"
    );
    assert_eq!(
        error_text(b"*3\r\n", small),
        "Protocol error: invalid multibulk length"
    );
    assert_eq!(decode_chunks(small, &[b"123456789\r\n"]).unwrap().len(), 1);
    assert_eq!(
        error_text(b"1234567890\r\n", small),
        "Protocol error: too big inline request"
    );
    assert_eq!(
        error_text(b"12345678901", small),
        "Protocol error: too big inline request"
    );
    let long = [b'1'; 1100];
    let header = [&b"*"[..], &long].concat();
    assert_eq!(
        error_text(&header, limits()),
        "Protocol error: too big mbulk count string"
    );
    let bulk = [&b"*1\r\n$"[..], &long].concat();
    assert_eq!(
        error_text(&bulk, limits()),
        "Protocol error: too big bulk count string"
    );
}

#[test]
fn huge_announced_lengths_allocate_nothing_up_front() {
    let mut decoder = RequestDecoder::new(limits());
    let mut buf = BytesMut::from(&b"*1000000\r\n$536870912\r\nab"[..]);
    let before = buf.capacity();
    assert_eq!(decoder.decode(&mut buf).unwrap(), None);
    assert_eq!(buf.capacity(), before);
}

#[test]
fn many_small_reads_of_big_requests_complete() {
    // Quadratic re-scanning would make these take minutes.
    let mut many = b"*20000\r\n".to_vec();
    for _ in 0..20000 {
        many.extend_from_slice(b"$1\r\na\r\n");
    }
    let chunks: Vec<&[u8]> = many.chunks(1).collect();
    let requests = decode_chunks(limits(), &chunks).unwrap();
    assert_eq!(requests[0].args.len(), 20000);

    let mut big = b"*2\r\n$3\r\nSET\r\n$5000000\r\n".to_vec();
    big.resize(big.len() + 5_000_000, b'v');
    big.extend_from_slice(b"\r\n");
    let chunks: Vec<&[u8]> = big.chunks(16).collect();
    let requests = decode_chunks(limits(), &chunks).unwrap();
    assert_eq!(requests[0].args[1].len(), 5_000_000);

    let mut line = vec![b'x'; 60_000];
    line.extend_from_slice(b"\r\n");
    let chunks: Vec<&[u8]> = line.chunks(1).collect();
    assert_eq!(
        decode_chunks(limits(), &chunks).unwrap()[0].args[0].len(),
        60_000
    );
}

#[test]
fn from_args_encodes_a_multibulk() {
    let request = Request::from_args(vec![Bytes::from_static(b"GET"), Bytes::from_static(b"k")]);
    assert_eq!(&request.raw[..], b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    assert_eq!(request.name(), b"GET");
    assert_eq!(Request::from_args(vec![]).name(), b"");
}

#[test]
fn with_prefix_rewrites_only_the_marked_arguments() {
    let args: Vec<Bytes> = ["MSET", "a", "1", "b", "2"]
        .iter()
        .map(|a| Bytes::copy_from_slice(a.as_bytes()))
        .collect();
    let req = Request::from_args(args);
    let out = req.with_prefix(b"ns:", &[1, 3]);
    assert_eq!(
        out.raw.as_ref(),
        b"*5\r\n$4\r\nMSET\r\n$4\r\nns:a\r\n$1\r\n1\r\n$4\r\nns:b\r\n$1\r\n2\r\n"
    );
    assert_eq!(out.args[3].as_ref(), b"ns:b");
    // Many keys take the marks path; the result is the same.
    let many: Vec<usize> = (1..out.args.len()).step_by(2).collect();
    let wide = Request::from_args((0..21).map(|i| Bytes::from(i.to_string())).collect());
    let marks: Vec<usize> = (1..21).step_by(2).collect();
    let rewritten = wide.with_prefix(b"p", &marks);
    for (i, arg) in rewritten.args.iter().enumerate() {
        let want = if i % 2 == 1 {
            format!("p{i}")
        } else {
            i.to_string()
        };
        assert_eq!(arg.as_ref(), want.as_bytes());
    }
    assert_eq!(many, vec![1, 3]);
}

#[test]
fn write_prefixed_splices_decoded_requests_like_a_full_encode() {
    let wire = b"*4\r\n$4\r\nMSET\r\n$1\r\na\r\n$10\r\n0123456789\r\n$1\r\nb\r\nSET  k  v\r\n";
    let reqs = decode_whole(wire).unwrap();
    for (req, at) in [(&reqs[0], &[1usize, 3][..]), (&reqs[1], &[1][..])] {
        let mut spliced = BytesMut::new();
        crate::resp::write_prefixed(req, b"ns:", at, &mut spliced);
        let mut full = BytesMut::new();
        crate::resp::encode_prefixed(&req.args, b"ns:", at, &mut full, |_, _| {});
        assert_eq!(spliced, full);
    }
    // Indices out of order, or not in the request: the full encode, same bytes.
    let mut out = BytesMut::new();
    crate::resp::write_prefixed(&reqs[0], b"p", &[3, 1], &mut out);
    let mut full = BytesMut::new();
    crate::resp::encode_prefixed(&reqs[0].args, b"p", &[3, 1], &mut full, |_, _| {});
    assert_eq!(out, full);
}

proptest::proptest! {
    /// `write_prefixed_key` writes what a full encode with that one key prefixed writes.
    #[test]
    fn write_prefixed_key_matches_encode_prefixed(
        args in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), 1..6),
        pick in 0usize..8,
        prefix in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..10),
    ) {
        let mut wire = BytesMut::new();
        let args: Vec<Bytes> = args.into_iter().map(Bytes::from).collect();
        crate::resp::encode_prefixed(&args, b"", &[], &mut wire, |_, _| {});
        let req = decode_whole(&wire).unwrap().remove(0);
        let mut spliced = BytesMut::from(&b"before"[..]);
        crate::resp::write_prefixed_key(&req, &prefix, pick, &mut spliced);
        let mut full = BytesMut::from(&b"before"[..]);
        crate::resp::encode_prefixed(&args, &prefix, &[pick], &mut full, |_, _| {});
        proptest::prop_assert_eq!(spliced, full);
    }

    /// For any request and any ascending set of key positions, splicing the request's own
    /// bytes gives exactly what encoding it from scratch gives.
    #[test]
    fn write_prefixed_matches_encode_prefixed(
        args in proptest::collection::vec(proptest::collection::vec(proptest::prelude::any::<u8>(), 0..40), 1..12),
        picks in proptest::collection::vec(proptest::prelude::any::<bool>(), 12),
        prefix in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..10),
    ) {
        let mut wire = BytesMut::new();
        let args: Vec<Bytes> = args.into_iter().map(Bytes::from).collect();
        crate::resp::encode_prefixed(&args, b"", &[], &mut wire, |_, _| {});
        let req = decode_whole(&wire).unwrap().remove(0);
        let at: Vec<usize> = (0..args.len()).filter(|&i| picks[i]).collect();
        let mut spliced = BytesMut::new();
        crate::resp::write_prefixed(&req, &prefix, &at, &mut spliced);
        let mut full = BytesMut::new();
        crate::resp::encode_prefixed(&args, &prefix, &at, &mut full, |_, _| {});
        proptest::prop_assert_eq!(spliced, full);
    }
}

/// Wherever `peek_get` finds a `GET key`, `decode` gives that same request from the
/// same bytes: every prefix of a few frames, valid and not.
#[test]
fn peek_get_agrees_with_decode() {
    let frames: [&[u8]; 9] = [
        b"*2\r\n$3\r\nGET\r\n$5\r\nkey:1\r\n",
        b"*2\r\n$3\r\ngEt\r\n$0\r\n\r\n",
        b"*2\r\n$3\r\nGET\r\n$13\r\nk\r\ney\0with\r\nx\r\n",
        b"*2\r\n$3\r\nSET\r\n$1\r\nk\r\n",
        b"*3\r\n$3\r\nGET\r\n$1\r\nk\r\n$1\r\nv\r\n",
        b"*2\r\n$3\r\nGET\r\n$01\r\nk\r\n",
        b"*2\r\n$3\r\nGET\r\n$-1\r\n",
        b"*2\r\n$4\r\nGETX\r\n$1\r\nk\r\n",
        b"GET k\r\n",
    ];
    let mut peeked = 0;
    for frame in frames {
        for cut in 0..=frame.len() {
            let input = &frame[..cut];
            let decoder = RequestDecoder::new(limits());
            let Some(get) = decoder.peek_get(input) else {
                continue;
            };
            peeked += 1;
            let mut buf = BytesMut::from(input);
            let mut d = RequestDecoder::new(limits());
            let req = d.decode(&mut buf).unwrap().expect("a whole request");
            assert_eq!(req.raw.len(), get.len, "{input:?}");
            assert_eq!(req.args.len(), 2);
            assert_eq!(&req.args[0][..], &input[get.name.clone()]);
            assert_eq!(&req.args[1][..], &input[get.key.clone()]);
            assert!(req.args[0].eq_ignore_ascii_case(b"GET"));
        }
    }
    // The three whole GETs, each only once complete.
    assert_eq!(peeked, 3);
    let small = RequestLimits {
        max_bulk_len: 4,
        ..limits()
    };
    let long = b"*2\r\n$3\r\nGET\r\n$5\r\nkey:1\r\n";
    assert!(RequestDecoder::new(small).peek_get(long).is_none());
}
