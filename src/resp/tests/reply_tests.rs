use crate::resp::{is_push, ProtocolError, ReplyScanner};

/// Feed `chunks` one after the other into a growing buffer, cutting off every
/// complete reply; return the replies' lengths.
fn scan_chunks(max_depth: usize, chunks: &[&[u8]]) -> Result<Vec<usize>, ProtocolError> {
    let mut scanner = ReplyScanner::new(max_depth);
    let mut buf = Vec::new();
    let mut out = Vec::new();
    for chunk in chunks {
        buf.extend_from_slice(chunk);
        while let Some(len) = scanner.scan(&buf)? {
            buf.drain(..len);
            out.push(len);
        }
    }
    Ok(out)
}

const REPLIES: &[&[u8]] = &[
    b"+OK\r\n",
    b"+\r\n",
    b"-ERR wrong type\r\n",
    b":-42\r\n",
    b"$5\r\na\r\n\0b\r\n",
    b"$0\r\n\r\n",
    b"$-1\r\n",
    b"*-1\r\n",
    b"*0\r\n",
    b"*3\r\n$3\r\nfoo\r\n*2\r\n:1\r\n*1\r\n+x\r\n$-1\r\n",
    b"_\r\n",
    b",3.14\r\n",
    b",-inf\r\n",
    b"#t\r\n",
    b"(3492890328409238509324850943850943825024385\r\n",
    b"!21\r\nSYNTAX invalid syntax\r\n",
    b"=15\r\ntxt:Some string\r\n",
    b"%2\r\n+first\r\n:1\r\n$6\r\nsecond\r\n~2\r\n:2\r\n:3\r\n",
    b"~0\r\n",
    b"%0\r\n",
    b">3\r\n$10\r\ninvalidate\r\n*1\r\n$3\r\nkey\r\n_\r\n",
    b"|1\r\n+key-popularity\r\n%2\r\n$1\r\na\r\n,0.1923\r\n$1\r\nb\r\n,0.0012\r\n*2\r\n:2039123\r\n:9543892\r\n",
    b"*2\r\n|1\r\n+ttl\r\n:3600\r\n$1\r\nv\r\n:7\r\n",
    b"|0\r\n+annotated-by-nothing\r\n",
    b"|1\r\n+a\r\n|1\r\n+b\r\n:1\r\n:2\r\n:3\r\n",
];

fn big_bulk() -> Vec<u8> {
    let mut bulk = b"$70000\r\n".to_vec();
    bulk.extend((0..70000u32).map(|i| (i % 251) as u8));
    bulk.extend_from_slice(b"\r\n");
    bulk
}

fn lengths(replies: &[Vec<u8>]) -> Vec<usize> {
    replies.iter().map(Vec::len).collect()
}

fn all_replies() -> Vec<Vec<u8>> {
    let mut replies: Vec<Vec<u8>> = REPLIES.iter().map(|r| r.to_vec()).collect();
    replies.insert(7, big_bulk());
    replies
}

#[test]
fn each_reply_is_found_whole() {
    let replies = all_replies();
    assert_eq!(
        scan_chunks(8, &[&replies.concat()]).unwrap(),
        lengths(&replies)
    );
}

#[test]
fn every_split_point_gives_the_same_replies() {
    let replies: Vec<Vec<u8>> = REPLIES.iter().map(|r| r.to_vec()).collect();
    let input = replies.concat();
    for at in 0..=input.len() {
        let (a, b) = input.split_at(at);
        assert_eq!(
            scan_chunks(8, &[a, b]).unwrap(),
            lengths(&replies),
            "split at {at}"
        );
    }
}

#[test]
fn one_byte_at_a_time_gives_the_same_replies() {
    let replies = all_replies();
    let input = replies.concat();
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    assert_eq!(scan_chunks(8, &bytes).unwrap(), lengths(&replies));
}

#[test]
fn scanner_is_reset_after_each_reply() {
    let mut scanner = ReplyScanner::new(4);
    assert_eq!(scanner.scan(b"*2\r\n:1\r\n").unwrap(), None);
    assert_eq!(
        scanner.scan(b"*2\r\n:1\r\n:2\r\n+OK\r\n").unwrap(),
        Some(12)
    );
    assert_eq!(scanner.scan(b"+OK\r\n").unwrap(), Some(5));
}

#[test]
fn nesting_is_bounded() {
    let nested = b"*1\r\n*1\r\n*1\r\n:1\r\n";
    assert_eq!(scan_chunks(3, &[nested]).unwrap().len(), 1);
    let error = scan_chunks(2, &[nested]).unwrap_err();
    assert_eq!(
        error.to_string(),
        "Protocol error: reply nested deeper than 2"
    );
}

#[test]
fn garbage_is_an_error_not_a_hang() {
    let cases: &[&[u8]] = &[
        b"?\r\n",
        b"$-2\r\n",
        b"*-2\r\n",
        b"%-1\r\n",
        b"!-1\r\n",
        b"$x\r\n",
        b"$?\r\n",
        b"*01\r\n",
        b"$3\r\nfooXY",
        b"+OK\n",
        b"$3\n",
        b"$1111111111111111111111111111111111111111",
        b"*9999999999999999999999\r\n",
        b"%-2\r\n",
        b"\r\n",
    ];
    for input in cases {
        assert!(scan_chunks(8, &[input]).is_err(), "{input:?}");
    }
}

#[test]
fn pushes_are_recognised() {
    assert!(is_push(b">2\r\n$7\r\nmessage\r\n$1\r\nx\r\n"));
    assert!(is_push(b"|1\r\n+a\r\n*1\r\n:1\r\n>1\r\n:1\r\n"));
    assert!(!is_push(b"*2\r\n$7\r\nmessage\r\n$1\r\nx\r\n"));
    assert!(!is_push(b"|1\r\n+a\r\n>1\r\n:1\r\n"));
    assert!(!is_push(b""));
}
