//! Property tests with `redis-protocol` as the oracle: its encoders produce
//! the replies the scanner must measure, its decoders read back what
//! `encode` and `Request::from_args` write.

use bytes::{Bytes, BytesMut};
use proptest::collection::vec;
use proptest::prelude::*;
use redis_protocol::resp2::types::{OwnedFrame as Frame2, Resp2Frame};
use redis_protocol::resp3::types::{OwnedFrame as Frame3, Resp3Frame, VerbatimStringFormat};

use super::request_tests::limits;
use crate::resp::{encode, Protocol, Reply, ReplyScanner, Request, RequestDecoder};

/// Bytes that can sit in a one-line value (no CR or LF).
fn line() -> impl Strategy<Value = Vec<u8>> {
    vec(
        any::<u8>().prop_filter("no CR/LF", |b| *b != b'\r' && *b != b'\n'),
        0..12,
    )
}

fn ascii_line() -> impl Strategy<Value = String> {
    "[ -~]{0,12}"
}

fn blob() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![4 => vec(any::<u8>(), 0..16), 1 => vec(any::<u8>(), 0..3000)]
}

fn double() -> impl Strategy<Value = f64> {
    prop_oneof![
        any::<f64>().prop_filter("not NaN", |d| !d.is_nan()),
        Just(f64::INFINITY),
        Just(-0.0),
        -1e6..1e6f64
    ]
}

fn frame2() -> impl Strategy<Value = Frame2> {
    let leaf = prop_oneof![
        line().prop_map(Frame2::SimpleString),
        ascii_line().prop_map(Frame2::Error),
        any::<i64>().prop_map(Frame2::Integer),
        blob().prop_map(Frame2::BulkString),
        Just(Frame2::Null),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| vec(inner, 0..6).prop_map(Frame2::Array))
}

/// RESP3 frames that can be map keys or set members.
fn key3() -> impl Strategy<Value = Frame3> {
    prop_oneof![
        blob().prop_map(|data| Frame3::BlobString {
            data,
            attributes: None
        }),
        line().prop_map(|data| Frame3::SimpleString {
            data,
            attributes: None
        }),
        any::<i64>().prop_map(|data| Frame3::Number {
            data,
            attributes: None
        }),
    ]
}

fn attributes3() -> impl Strategy<Value = Option<redis_protocol::resp3::types::OwnedAttributes>> {
    prop_oneof![3 => Just(None), 1 => vec((key3(), key3()), 1..3).prop_map(|pairs| Some(pairs.into_iter().collect()))]
}

fn frame3() -> impl Strategy<Value = Frame3> {
    let leaf = prop_oneof![
        key3(),
        (ascii_line(), attributes3())
            .prop_map(|(data, attributes)| Frame3::SimpleError { data, attributes }),
        (blob(), attributes3())
            .prop_map(|(data, attributes)| Frame3::BlobError { data, attributes }),
        (double(), attributes3())
            .prop_map(|(data, attributes)| Frame3::Double { data, attributes }),
        any::<bool>().prop_map(|data| Frame3::Boolean {
            data,
            attributes: None
        }),
        Just(Frame3::Null),
        "[1-9][0-9]{0,40}".prop_map(|s| Frame3::BigNumber {
            data: s.into_bytes(),
            attributes: None
        }),
        blob().prop_map(|data| Frame3::VerbatimString {
            data,
            format: VerbatimStringFormat::Text,
            attributes: None
        }),
    ];
    leaf.prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            (vec(inner.clone(), 0..6), attributes3())
                .prop_map(|(data, attributes)| Frame3::Array { data, attributes }),
            vec(inner.clone(), 0..6).prop_map(|data| Frame3::Push {
                data,
                attributes: None
            }),
            vec(key3(), 0..6).prop_map(|v| Frame3::Set {
                data: v.into_iter().collect(),
                attributes: None
            }),
            (vec((key3(), inner), 0..4), attributes3()).prop_map(|(v, attributes)| Frame3::Map {
                data: v.into_iter().collect(),
                attributes
            }),
        ]
    })
}

fn encode2(frame: &Frame2) -> Vec<u8> {
    let mut buf = vec![0; frame.encode_len(false)];
    let len = redis_protocol::resp2::encode::encode(&mut buf, frame, false).unwrap();
    buf.truncate(len);
    buf
}

fn encode3(frame: &Frame3) -> Vec<u8> {
    let mut buf = vec![0; frame.encode_len(false)];
    let len = redis_protocol::resp3::encode::complete::encode(&mut buf, frame, false).unwrap();
    buf.truncate(len);
    buf
}

/// Scan `replies` concatenated and fed in chunks of `chunk` bytes; return the lengths found.
fn scan_lengths(replies: &[Vec<u8>], chunk: usize) -> Vec<usize> {
    let input = replies.concat();
    let mut scanner = ReplyScanner::new(64);
    let mut buf = Vec::new();
    let mut found = Vec::new();
    for piece in input.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Some(len) = scanner.scan(&buf).unwrap() {
            buf.drain(..len);
            found.push(len);
        }
    }
    assert!(buf.is_empty());
    found
}

fn reply_leaf() -> impl Strategy<Value = Reply> {
    prop_oneof![
        line().prop_map(|s| Reply::Simple(s.into())),
        ascii_line().prop_map(|s| Reply::Error(s.into())),
        any::<i64>().prop_map(Reply::Integer),
        blob().prop_map(|b| Reply::Bulk(b.into())),
        Just(Reply::Null),
        Just(Reply::NullArray),
        double().prop_map(Reply::Double),
        any::<bool>().prop_map(Reply::Boolean),
        (prop_oneof![Just(*b"txt"), Just(*b"mkd")], blob()).prop_map(|(format, text)| {
            Reply::Verbatim {
                format,
                text: text.into(),
            }
        }),
    ]
}

fn reply_key() -> impl Strategy<Value = Reply> {
    prop_oneof![
        line().prop_map(|s| Reply::Simple(s.into())),
        any::<i64>().prop_map(Reply::Integer),
        blob().prop_map(|b| Reply::Bulk(b.into())),
    ]
}

fn reply() -> impl Strategy<Value = Reply> {
    let nested = reply_leaf().prop_recursive(4, 40, 6, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..6).prop_map(Reply::Array),
            vec(reply_key(), 0..6).prop_map(Reply::Set),
            vec((reply_key(), inner), 0..4).prop_map(|pairs| Reply::Map(unique_keys(pairs))),
        ]
    });
    prop_oneof![4 => nested.clone(), 1 => vec(nested, 0..4).prop_map(Reply::Push)]
}

/// A map's pairs with each key once (first kept): Redis never sends a key twice, and
/// decoders disagree on which of two equal keys wins.
fn unique_keys(pairs: Vec<(Reply, Reply)>) -> Vec<(Reply, Reply)> {
    let mut seen = std::collections::HashSet::new();
    pairs
        .into_iter()
        .filter(|(k, _)| seen.insert(k.to_bytes(Protocol::Resp3)))
        .collect()
}

/// What a RESP3 decoder must read back for `reply`.
fn expected3(reply: &Reply) -> Frame3 {
    let all = |items: &[Reply]| items.iter().map(expected3).collect::<Vec<_>>();
    match reply {
        Reply::Simple(s) => Frame3::SimpleString {
            data: s.to_vec(),
            attributes: None,
        },
        Reply::Error(s) => Frame3::SimpleError {
            data: String::from_utf8_lossy(s).into(),
            attributes: None,
        },
        Reply::Integer(n) => Frame3::Number {
            data: *n,
            attributes: None,
        },
        Reply::Bulk(b) => Frame3::BlobString {
            data: b.to_vec(),
            attributes: None,
        },
        Reply::Null | Reply::NullArray => Frame3::Null,
        Reply::Array(items) => Frame3::Array {
            data: all(items),
            attributes: None,
        },
        Reply::Push(items) => Frame3::Push {
            data: all(items),
            attributes: None,
        },
        Reply::Set(items) => Frame3::Set {
            data: all(items).into_iter().collect(),
            attributes: None,
        },
        Reply::Map(pairs) => Frame3::Map {
            data: pairs
                .iter()
                .map(|(k, v)| (expected3(k), expected3(v)))
                .collect(),
            attributes: None,
        },
        Reply::Double(d) => Frame3::Double {
            data: *d,
            attributes: None,
        },
        Reply::Boolean(b) => Frame3::Boolean {
            data: *b,
            attributes: None,
        },
        Reply::Verbatim { format, text } => Frame3::VerbatimString {
            data: text.to_vec(),
            format: if format == b"txt" {
                VerbatimStringFormat::Text
            } else {
                VerbatimStringFormat::Markdown
            },
            attributes: None,
        },
    }
}

/// Whether a RESP2 frame is what Redis would send a RESP2 client for `reply`.
fn matches2(reply: &Reply, frame: &Frame2) -> bool {
    let all = |items: &[Reply], frames: &[Frame2]| {
        items.len() == frames.len() && items.iter().zip(frames).all(|(r, f)| matches2(r, f))
    };
    match (reply, frame) {
        (Reply::Simple(s), Frame2::SimpleString(f)) => s[..] == f[..],
        (Reply::Error(s), Frame2::Error(f)) => s[..] == *f.as_bytes(),
        (Reply::Integer(n), Frame2::Integer(f)) => n == f,
        (Reply::Bulk(b) | Reply::Verbatim { text: b, .. }, Frame2::BulkString(f)) => b[..] == f[..],
        (Reply::Null | Reply::NullArray, Frame2::Null) => true,
        (Reply::Array(items) | Reply::Set(items) | Reply::Push(items), Frame2::Array(frames)) => {
            all(items, frames)
        }
        (Reply::Map(pairs), Frame2::Array(frames)) => {
            let flat: Vec<Reply> = pairs
                .iter()
                .flat_map(|(k, v)| [k.clone(), v.clone()])
                .collect();
            all(&flat, frames)
        }
        (Reply::Double(d), Frame2::BulkString(f)) => {
            std::str::from_utf8(f)
                .ok()
                .and_then(|s| s.parse::<f64>().ok())
                == Some(*d)
        }
        (Reply::Boolean(b), Frame2::Integer(f)) => i64::from(*b) == *f,
        _ => false,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn scanner_finds_resp2_boundaries(frames in vec(frame2(), 1..8), chunk in 1..64usize) {
        let replies: Vec<Vec<u8>> = frames.iter().map(encode2).collect();
        let expected: Vec<usize> = replies.iter().map(Vec::len).collect();
        prop_assert_eq!(scan_lengths(&replies, chunk), expected.clone());
        prop_assert_eq!(scan_lengths(&replies, usize::MAX), expected);
    }

    #[test]
    fn scanner_finds_resp3_boundaries(frames in vec(frame3(), 1..8), chunk in 1..64usize) {
        let replies: Vec<Vec<u8>> = frames.iter().map(encode3).collect();
        let expected: Vec<usize> = replies.iter().map(Vec::len).collect();
        prop_assert_eq!(scan_lengths(&replies, chunk), expected.clone());
        prop_assert_eq!(scan_lengths(&replies, usize::MAX), expected);
    }

    #[test]
    fn resp3_encoding_decodes_to_the_value(reply in reply()) {
        let bytes = reply.to_bytes(Protocol::Resp3);
        let (frame, len) = redis_protocol::resp3::decode::complete::decode(&bytes).unwrap().unwrap();
        prop_assert_eq!(len, bytes.len());
        prop_assert_eq!(frame, expected3(&reply));
        prop_assert_eq!(scan_lengths(&[bytes.to_vec()], 7), vec![bytes.len()]);
    }

    #[test]
    fn resp2_encoding_decodes_to_the_down_converted_value(reply in reply()) {
        let mut out = BytesMut::new();
        encode(&reply, Protocol::Resp2, &mut out);
        let (frame, len) = redis_protocol::resp2::decode::decode(&out).unwrap().unwrap();
        prop_assert_eq!(len, out.len());
        prop_assert!(matches2(&reply, &frame), "{:?} decoded as {:?}", reply, frame);
    }

    #[test]
    fn requests_round_trip(requests in vec(vec(vec(any::<u8>(), 0..40), 1..12), 1..6), chunk in 1..32usize) {
        let built: Vec<Request> = requests
            .iter()
            .map(|args| Request::from_args(args.iter().cloned().map(Bytes::from).collect()))
            .collect();
        for (request, args) in built.iter().zip(&requests) {
            let (frame, _) = redis_protocol::resp2::decode::decode(&request.raw).unwrap().unwrap();
            let oracle = Frame2::Array(args.iter().cloned().map(Frame2::BulkString).collect());
            prop_assert_eq!(frame, oracle);
        }
        let input: Vec<u8> = built.iter().flat_map(|r| r.raw.to_vec()).collect();
        let mut decoder = RequestDecoder::new(limits());
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for piece in input.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(request) = decoder.decode(&mut buf).unwrap() {
                decoded.push(request);
            }
        }
        prop_assert_eq!(decoded, built);
    }

    #[test]
    fn quoted_inline_commands_round_trip(args in vec(vec(any::<u8>(), 0..20), 1..8), chunk in 1..16usize) {
        let mut line = Vec::new();
        for arg in &args {
            line.push(b'"');
            for &b in arg {
                match b {
                    b'"' | b'\\' => line.extend_from_slice(&[b'\\', b]),
                    b' '..=b'~' => line.push(b),
                    _ => line.extend_from_slice(format!("\\x{b:02x}").as_bytes()),
                }
            }
            line.extend_from_slice(b"\" \t");
        }
        line.extend_from_slice(b"\r\n");
        let mut decoder = RequestDecoder::new(limits());
        let mut buf = BytesMut::new();
        let mut decoded = Vec::new();
        for piece in line.chunks(chunk) {
            buf.extend_from_slice(piece);
            while let Some(request) = decoder.decode(&mut buf).unwrap() {
                decoded.push(request);
            }
        }
        let expected = Request::from_args(args.into_iter().map(Bytes::from).collect());
        prop_assert_eq!(decoded, vec![expected]);
    }
}
