//! The local `/webhook` endpoint against slow and greedy clients: a head or a body that
//! trickles in, an idle connection, an oversized body, and clients holding every
//! connection slot. Each is cut off by its limit and a normal request still gets through.

use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::RawQuery;
use axum::routing::any;
use remedios_local::webhook_proxy::{ProxyBounds, serve};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const LIMITS: ProxyBounds = ProxyBounds {
    header_timeout: Duration::from_secs(1),
    body_timeout: Duration::from_secs(1),
    max_body: 1024,
    max_connections: 4,
};

/// A stand-in for the webhook function: answers with what it received.
async fn function() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!(
        "http://{}/lambda-url/webhook/",
        listener.local_addr().expect("addr")
    );
    let app = Router::new().route(
        "/lambda-url/webhook/",
        any(|RawQuery(q): RawQuery, body: Bytes| async move {
            format!("query={} body={}", q.unwrap_or_default(), body.len())
        }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn proxy() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr").to_string();
    tokio::spawn(serve(listener, function().await, LIMITS));
    addr
}

/// Reads until the server closes the connection (or 10 s pass); what it sent.
async fn until_closed(stream: &mut TcpStream) -> (String, Duration) {
    let started = Instant::now();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while started.elapsed() < Duration::from_secs(10) {
        match tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) | Err(_) => break,
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
    (
        String::from_utf8_lossy(&got).into_owned(),
        started.elapsed(),
    )
}

async fn normal_request(addr: &str) -> reqwest::Response {
    reqwest::Client::new()
        .post(format!("http://{addr}/webhook?hub.mode=x"))
        .body("0123456789")
        .timeout(Duration::from_secs(10))
        .send()
        .await
        .expect("a normal request is answered")
}

#[tokio::test]
async fn requests_are_forwarded_with_their_query_and_body() {
    let addr = proxy().await;
    let answer = normal_request(&addr).await;
    assert_eq!(answer.status(), 200);
    assert_eq!(
        answer.text().await.expect("body"),
        "query=hub.mode=x body=10"
    );
    let other = reqwest::get(format!("http://{addr}/other"))
        .await
        .expect("answered");
    assert_eq!(other.status(), 404);
}

#[tokio::test]
async fn a_head_that_trickles_in_is_cut_off() {
    let addr = proxy().await;
    let mut slow = TcpStream::connect(&addr).await.expect("connect");
    slow.write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("start of head");
    let started = Instant::now();
    // One header byte every 200 ms, never finishing the head.
    let trickle = async {
        loop {
            if slow.write_all(b"X").await.is_err() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
            if started.elapsed() > Duration::from_secs(8) {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(10), trickle)
        .await
        .expect("the trickle ends");
    let cut_after = started.elapsed();
    assert!(
        cut_after < Duration::from_secs(5),
        "the slow head was cut off after {cut_after:?}, limit {:?}",
        LIMITS.header_timeout
    );
    // A normal client is still served.
    assert_eq!(normal_request(&addr).await.status(), 200);
}

#[tokio::test]
async fn an_idle_connection_is_closed() {
    let addr = proxy().await;
    let mut idle = TcpStream::connect(&addr).await.expect("connect");
    let (_, after) = until_closed(&mut idle).await;
    assert!(
        after >= Duration::from_millis(900) && after < Duration::from_secs(5),
        "closed after {after:?}"
    );
}

#[tokio::test]
async fn a_body_that_stalls_gets_408_and_an_oversized_one_413() {
    let addr = proxy().await;
    let mut stalled = TcpStream::connect(&addr).await.expect("connect");
    stalled
        .write_all(b"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789")
        .await
        .expect("head and part of the body");
    let (answer, after) = until_closed(&mut stalled).await;
    assert!(answer.starts_with("HTTP/1.1 408"), "answer: {answer:?}");
    assert!(after < Duration::from_secs(5), "answered after {after:?}");

    let big = reqwest::Client::new()
        .post(format!("http://{addr}/webhook"))
        .body(vec![b'x'; LIMITS.max_body + 1])
        .send()
        .await
        .expect("answered");
    assert_eq!(big.status(), 413);
}

#[tokio::test]
async fn clients_holding_every_slot_are_cleared_and_a_normal_request_gets_through() {
    let addr = proxy().await;
    let mut hogs = Vec::new();
    for _ in 0..LIMITS.max_connections + 2 {
        hogs.push(TcpStream::connect(&addr).await.expect("connect"));
    }
    let started = Instant::now();
    let answer = normal_request(&addr).await;
    assert_eq!(answer.status(), 200);
    let waited = started.elapsed();
    assert!(
        waited < Duration::from_secs(6),
        "the normal request waited {waited:?} behind idle connections"
    );
    // The idle ones were closed by the server.
    for hog in &mut hogs {
        let (_, after) = until_closed(hog).await;
        assert!(
            after < Duration::from_secs(5),
            "an idle connection stayed {after:?}"
        );
    }
}
