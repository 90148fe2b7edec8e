//! The fake Relay refuses what a real Relay 26.9 refused (DESIGN.md, "Sentry"),
//! so that the other tests passing means something.

#[path = "sentry_common/mod.rs"]
mod common;

use std::io::Write;

use common::relay::{FakeRelay, KEY, Outcome, PROJECT};

const EVENT_ID: &str = "0123456789abcdef0123456789abcdef";

fn auth() -> String {
    format!("Sentry sentry_key={KEY}, sentry_version=7, sentry_client=crashwatch/0.1.0")
}

fn envelope(items: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = format!("{{\"event_id\":\"{EVENT_ID}\"}}\n").into_bytes();
    for (header, payload) in items {
        out.extend_from_slice(header.as_bytes());
        out.push(b'\n');
        out.extend_from_slice(payload);
        out.push(b'\n');
    }
    out
}

async fn post(relay: &FakeRelay, body: Vec<u8>, headers: &[(&str, String)]) -> (u16, serde_json::Value) {
    let url = format!("http://{}/api/{PROJECT}/envelope/", relay.addr());
    let mut request =
        reqwest::Client::new().post(url).header("content-type", "application/x-sentry-envelope").body(body);
    for (name, value) in headers {
        request = request.header(*name, value);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let bytes = response.bytes().await.unwrap();
    let body = serde_json::from_slice(&bytes).unwrap_or(serde_json::Value::Null);
    (status, body)
}

fn event_item() -> (String, Vec<u8>) {
    let payload = format!("{{\"event_id\":\"{EVENT_ID}\"}}").into_bytes();
    (format!("{{\"type\":\"event\",\"length\":{}}}", payload.len()), payload)
}

#[tokio::test]
async fn accepts_a_well_formed_envelope() {
    let relay = FakeRelay::start().await;
    let (header, payload) = event_item();
    let (status, _) = post(&relay, envelope(&[(&header, &payload)]), &[("x-sentry-auth", auth())]).await;
    assert_eq!(status, 200);
    relay.with(|s| assert_eq!(s.requests[0].outcome, Outcome::Accepted));
}

#[tokio::test]
async fn refuses_what_relay_refuses() {
    let relay = FakeRelay::start().await;
    let (header, payload) = event_item();
    let good = envelope(&[(&header, &payload)]);
    let with_auth = [("x-sentry-auth", auth())];

    // \r\n after a header.
    let crlf = String::from_utf8(good.clone()).unwrap().replacen("}\n", "}\r\n", 1);
    let (status, body) = post(&relay, crlf.into_bytes(), &with_auth).await;
    assert_eq!(status, 400);
    assert_eq!(body["causes"][0], "missing newline after header or payload");

    // A wrong length.
    let wrong = String::from_utf8(good.clone())
        .unwrap()
        .replace(&format!("\"length\":{}", payload.len()), &format!("\"length\":{}", payload.len() - 1));
    assert_eq!(post(&relay, wrong.into_bytes(), &with_auth).await.0, 400);

    // No auth, and two forms of auth at once.
    assert_eq!(post(&relay, good.clone(), &[]).await.0, 401);
    let two = [("x-sentry-auth", auth()), ("authorization", auth())];
    let (status, body) = post(&relay, good.clone(), &two).await;
    assert_eq!((status, body["detail"].as_str()), (401, Some("multiple authorization payloads detected")));

    // A body that claims gzip but is not.
    let (status, _) =
        post(&relay, good.clone(), &[("x-sentry-auth", auth()), ("content-encoding", "gzip".into())]).await;
    assert_eq!(status, 400);

    // A minidump without the MDMP magic.
    let dump = b"not a dump";
    let dump_header = format!(
        "{{\"type\":\"attachment\",\"length\":{},\"filename\":\"c.dmp\",\"attachment_type\":\"event.minidump\"}}",
        dump.len()
    );
    let bad_dump = envelope(&[(&header, &payload), (&dump_header, dump)]);
    assert_eq!(post(&relay, bad_dump, &with_auth).await.0, 400);

    // An event over 1 MiB.
    let big = format!("{{\"message\":\"{}\"}}", "x".repeat(1024 * 1024)).into_bytes();
    let big_header = format!("{{\"type\":\"event\",\"length\":{}}}", big.len());
    assert_eq!(post(&relay, envelope(&[(&big_header, &big)]), &with_auth).await.0, 413);

    // gzip that is gzip is fine.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(&good).unwrap();
    let (status, _) =
        post(&relay, gz.finish().unwrap(), &[("x-sentry-auth", auth()), ("content-encoding", "gzip".into())]).await;
    assert_eq!(status, 200);
    relay.with(|s| {
        assert_eq!(s.invalid().len(), 7);
        assert_eq!(s.accepted.len(), 1);
    });
}
