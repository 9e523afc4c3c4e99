use bytes::Bytes;

use crate::resp::encode::format_double;
use crate::resp::{Protocol, Reply};

fn both(reply: &Reply) -> (Bytes, Bytes) {
    (
        reply.to_bytes(Protocol::Resp2),
        reply.to_bytes(Protocol::Resp3),
    )
}

#[test]
fn scalars() {
    assert_eq!(&Reply::ok().to_bytes(Protocol::Resp2)[..], b"+OK\r\n");
    assert_eq!(
        &Reply::simple("PONG").to_bytes(Protocol::Resp3)[..],
        b"+PONG\r\n"
    );
    assert_eq!(
        &Reply::error("NOPERM no").to_bytes(Protocol::Resp2)[..],
        b"-NOPERM no\r\n"
    );
    assert_eq!(
        &Reply::Integer(-7).to_bytes(Protocol::Resp2)[..],
        b":-7\r\n"
    );
    assert_eq!(
        &Reply::Integer(i64::MIN).to_bytes(Protocol::Resp2)[..],
        b":-9223372036854775808\r\n"
    );
    assert_eq!(
        &Reply::bulk(&b"a\r\nb"[..]).to_bytes(Protocol::Resp2)[..],
        b"$4\r\na\r\nb\r\n"
    );
    assert_eq!(
        &Reply::bulk(Bytes::new()).to_bytes(Protocol::Resp3)[..],
        b"$0\r\n\r\n"
    );
}

#[test]
fn error_and_status_text_is_sanitised() {
    assert_eq!(
        &Reply::error("ERR a\r\nb\nc").to_bytes(Protocol::Resp2)[..],
        b"-ERR a  b c\r\n"
    );
    assert_eq!(
        &Reply::simple("x\ry").to_bytes(Protocol::Resp3)[..],
        b"+x y\r\n"
    );
}

#[test]
fn resp2_down_conversion_matches_redis() {
    let cases: Vec<(Reply, &[u8], &[u8])> = vec![
        (Reply::Null, b"$-1\r\n", b"_\r\n"),
        (Reply::NullArray, b"*-1\r\n", b"_\r\n"),
        (Reply::Boolean(true), b":1\r\n", b"#t\r\n"),
        (Reply::Boolean(false), b":0\r\n", b"#f\r\n"),
        (Reply::Double(1.5), b"$3\r\n1.5\r\n", b",1.5\r\n"),
        (Reply::Double(f64::INFINITY), b"$3\r\ninf\r\n", b",inf\r\n"),
        (
            Reply::Double(f64::NEG_INFINITY),
            b"$4\r\n-inf\r\n",
            b",-inf\r\n",
        ),
        (
            Reply::Verbatim {
                format: *b"txt",
                text: Bytes::from_static(b"hi"),
            },
            b"$2\r\nhi\r\n",
            b"=6\r\ntxt:hi\r\n",
        ),
        (
            Reply::Map(vec![
                (Reply::bulk("k"), Reply::Integer(1)),
                (Reply::simple("s"), Reply::Null),
            ]),
            b"*4\r\n$1\r\nk\r\n:1\r\n+s\r\n$-1\r\n",
            b"%2\r\n$1\r\nk\r\n:1\r\n+s\r\n_\r\n",
        ),
        (
            Reply::Set(vec![Reply::Integer(1)]),
            b"*1\r\n:1\r\n",
            b"~1\r\n:1\r\n",
        ),
        (
            Reply::Push(vec![Reply::bulk("invalidate"), Reply::NullArray]),
            b"*2\r\n$10\r\ninvalidate\r\n*-1\r\n",
            b">2\r\n$10\r\ninvalidate\r\n_\r\n",
        ),
        (Reply::Array(vec![]), b"*0\r\n", b"*0\r\n"),
    ];
    for (reply, resp2, resp3) in cases {
        let (two, three) = both(&reply);
        assert_eq!((&two[..], &three[..]), (resp2, resp3), "{reply:?}");
    }
}

#[test]
fn doubles_format_like_printf_17g() {
    // Expected texts are C's printf("%.17g") output.
    let cases: &[(f64, &str)] = &[
        (2.71, "2.71"),
        (1.1, "1.1000000000000001"),
        (1.5, "1.5"),
        (1e20, "1e+20"),
        (1e-5, "1.0000000000000001e-05"),
        (0.1, "0.10000000000000001"),
        (100.0, "100"),
        (-0.0, "-0"),
        (0.0, "0"),
        (1e16, "10000000000000000"),
        (1e17, "1e+17"),
        (12345678901234567.0, "12345678901234568"),
        (1.0 / 3.0, "0.33333333333333331"),
        (-2.5e-300, "-2.5e-300"),
        (f64::MAX, "1.7976931348623157e+308"),
        (5e-324, "4.9406564584124654e-324"),
        (0.0001, "0.0001"),
        (0.00001234, "1.234e-05"),
        (f64::NAN, "nan"),
    ];
    for &(value, text) in cases {
        assert_eq!(format_double(value), text, "{value:e}");
    }
}

/// Headers of every length, on both sides of the 8-byte fast path's bound, read like
/// `format!` writes them.
#[test]
fn put_header_writes_the_shortest_decimal_form() {
    let mut values: Vec<usize> = (0..=1_100).collect();
    for p in 1..=19u32 {
        let ten = 10usize.pow(p);
        values.extend([ten - 1, ten, ten + 1]);
    }
    values.push(usize::MAX);
    for n in values {
        for kind in [b'$', b'*', b'%'] {
            let mut out = bytes::BytesMut::from(&b"x"[..]);
            crate::resp::put_header(&mut out, kind, n);
            assert_eq!(
                out,
                format!("x{}{n}\r\n", char::from(kind)).as_bytes(),
                "{n}"
            );
        }
    }
}
