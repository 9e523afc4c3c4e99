//! Tests of request parsing and of one connection's exchange over an in-memory pipe.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

#[test]
fn head_len_finds_the_blank_line() {
    assert_eq!(head_len(b""), None);
    assert_eq!(head_len(b"GET / HTTP/1.1\r\n"), None);
    assert_eq!(head_len(b"GET / HTTP/1.1\r\nHost: a\r\n"), None);
    assert_eq!(head_len(b"GET / HTTP/1.1\r\nHost: a\r\n\r"), None);
    let head = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
    assert_eq!(head_len(head), Some(head.len()));
    let mut with_body = head.to_vec();
    with_body.extend_from_slice(b"body\r\n\r\n");
    assert_eq!(head_len(&with_body), Some(head.len()));
    assert_eq!(head_len(b"GET / HTTP/1.0\n\nrest"), Some(16));
    assert_eq!(head_len(b"GET / HTTP/1.0\r\n\nrest"), Some(17));
}

#[test]
fn head_len_at_every_split_point() {
    let head = b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:9121\r\nAccept: */*\r\n\r\n";
    for cut in 0..head.len() {
        assert_eq!(head_len(&head[..cut]), None, "cut at {cut}");
    }
    assert_eq!(head_len(head), Some(head.len()));
}

#[test]
fn parse_takes_method_and_path() {
    let req = parse(b"GET /readyz HTTP/1.1\r\nHost: x\r\nUser-Agent: kube-probe/1.30\r\n\r\n");
    assert_eq!(
        req,
        Ok(Request {
            method: "GET",
            path: "/readyz"
        })
    );
    let req = parse(b"GET /metrics?name[]=x#frag HTTP/1.0\r\n\r\n").unwrap();
    assert_eq!(req.path, "/metrics");
    let req = parse(b"POST /livez HTTP/1.1\r\nContent-Length: 3\r\n\r\n").unwrap();
    assert_eq!(req.method, "POST");
    let req = parse(b"GET / HTTP/1.1\n\n").unwrap();
    assert_eq!(req.path, "/");
}

#[test]
fn parse_refuses_malformed_heads() {
    let bad_line = [
        &b"\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET /\r\n\r\n",
        b"GET  / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1 extra\r\n\r\n",
        b"GET http://host/ HTTP/1.1\r\n\r\n",
        b"GET /a\x01b HTTP/1.1\r\n\r\n",
        b"G(T / HTTP/1.1\r\n\r\n",
        b"GET /\xff HTTP/1.1\r\n\r\n",
        b"GET / SPDY/3\r\n\r\n",
    ];
    for head in bad_line {
        assert_eq!(
            parse(head),
            Err(ParseError::RequestLine),
            "{}",
            String::from_utf8_lossy(head)
        );
    }
    assert_eq!(parse(b"GET / HTTP/2.0\r\n\r\n"), Err(ParseError::Version));
    assert_eq!(
        parse(b"GET / HTTP/1.1\r\nno colon\r\n\r\n"),
        Err(ParseError::Header)
    );
    assert_eq!(
        parse(b"GET / HTTP/1.1\r\n: empty\r\n\r\n"),
        Err(ParseError::Header)
    );
    assert_eq!(
        parse(b"GET / HTTP/1.1\r\nBad Name: x\r\n\r\n"),
        Err(ParseError::Header)
    );
    assert_eq!(
        parse(b"GET / HTTP/1.1\r\n folded: x\r\n\r\n"),
        Err(ParseError::Header)
    );
    // Header values are not interpreted: any bytes pass.
    assert!(parse(b"GET / HTTP/1.1\r\nX: \xff\x01\r\n\r\n").is_ok());
}

#[test]
fn response_encoding() {
    let r = Response::text(200, "ok\n");
    assert_eq!(
        String::from_utf8(r.encode()).unwrap(),
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: 3\r\n\
         Connection: close\r\n\r\nok\n"
    );
    let r = String::from_utf8(Response::text(405, "").encode()).unwrap();
    assert!(r.starts_with("HTTP/1.1 405 Method Not Allowed\r\n"), "{r}");
    assert!(r.contains("\r\nAllow: GET\r\n"), "{r}");
}

/// Runs one connection over an in-memory pipe: sends `request` in `pieces` chunks,
/// returns everything the server wrote.
async fn exchange(request: &[u8], pieces: usize, limits: Limits) -> String {
    let (mut client, server) = tokio::io::duplex(256 * 1024);
    let task = tokio::spawn(async move {
        serve_connection(server, &limits, |req| {
            Response::text(200, format!("{} {}\n", req.method, req.path))
        })
        .await
    });
    let step = request.len().div_ceil(pieces.max(1)).max(1);
    for chunk in request.chunks(step) {
        client.write_all(chunk).await.unwrap();
        tokio::task::yield_now().await;
    }
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    drop(client);
    task.await.unwrap();
    String::from_utf8(out).unwrap()
}

#[tokio::test]
async fn one_request_is_answered_and_closed() {
    let request = b"GET /livez?x=1 HTTP/1.1\r\nHost: a\r\n\r\n";
    for pieces in [1, 2, 7, request.len()] {
        let out = exchange(request, pieces, Limits::default()).await;
        assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
        assert!(out.contains("\r\nConnection: close\r\n"), "{out}");
        assert!(out.ends_with("\r\n\r\nGET /livez\n"), "{out}");
    }
}

#[tokio::test]
async fn oversized_head_gets_431() {
    let limits = Limits {
        max_head: 1024,
        ..Limits::default()
    };
    let mut request = b"GET / HTTP/1.1\r\n".to_vec();
    while request.len() < 4096 {
        request.extend_from_slice(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n");
    }
    request.extend_from_slice(b"\r\n");
    let out = exchange(&request, 1, limits).await;
    assert!(
        out.starts_with("HTTP/1.1 431 Request Header Fields Too Large\r\n"),
        "{out}"
    );
    // Exactly at the limit is still fine.
    let mut request = b"GET /a HTTP/1.1\r\nX: ".to_vec();
    request.resize(1024 - 4, b'y');
    request.extend_from_slice(b"\r\n\r\n");
    let out = exchange(&request, 3, limits).await;
    assert!(out.starts_with("HTTP/1.1 200 OK\r\n"), "{out}");
}

#[tokio::test]
async fn malformed_request_gets_400_and_version_505() {
    let out = exchange(b"HELLO\r\n\r\n", 1, Limits::default()).await;
    assert!(out.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{out}");
    let out = exchange(b"GET / HTTP/3\r\n\r\n", 1, Limits::default()).await;
    assert!(out.starts_with("HTTP/1.1 505 "), "{out}");
}

#[tokio::test]
async fn slow_head_gets_408() {
    let limits = Limits {
        read_timeout: Duration::from_millis(50),
        ..Limits::default()
    };
    let (mut client, server) = tokio::io::duplex(1024);
    let task = tokio::spawn(async move {
        serve_connection(server, &limits, |_| Response::text(200, "")).await
    });
    client.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    let out = String::from_utf8(out).unwrap();
    assert!(out.starts_with("HTTP/1.1 408 Request Timeout\r\n"), "{out}");
    drop(client);
    task.await.unwrap();
}

#[tokio::test]
async fn peer_closing_early_gets_nothing() {
    let (client, server) = tokio::io::duplex(1024);
    drop(client);
    serve_connection(server, &Limits::default(), |_| {
        panic!("no request was sent")
    })
    .await;
}
