use super::*;
use std::time::Duration;

pub(crate) const EVENT_ID: &str = "0123456789abcdef0123456789abcdef";

pub(crate) fn dsn() -> Dsn {
    "http://0123456789abcdef0123456789abcdef@127.0.0.1:1/42".parse().unwrap()
}

pub(crate) fn at(secs: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
}

pub(crate) fn crash_envelope() -> Envelope {
    let mut envelope =
        Envelope::new(EVENT_ID.parse().unwrap(), serde_json::json!({"level": "fatal", "platform": "native"})).unwrap();
    envelope
        .add_attachment(Attachment::minidump(
            "crash.dmp",
            AttachmentSource::Bytes(b"MDMP\n\r\nxx".to_vec()),
            MinidumpProcessing::Server,
        ))
        .unwrap();
    envelope
        .add_attachment(Attachment::text("log.txt", AttachmentSource::Bytes(b"line 1\nline 2\n".to_vec())))
        .unwrap();
    envelope
}

#[test]
fn framing_is_byte_exact() {
    let bytes = crash_envelope().to_vec(&dsn(), at(1_700_000_000)).unwrap();
    let expected = concat!(
        r#"{"event_id":"0123456789abcdef0123456789abcdef","dsn":"http://0123456789abcdef0123456789abcdef@127.0.0.1:1/42","sent_at":"2023-11-14T22:13:20Z"}"#,
        "\n",
        r#"{"type":"event","length":83}"#,
        "\n",
        r#"{"level":"fatal","platform":"native","event_id":"0123456789abcdef0123456789abcdef"}"#,
        "\n",
        r#"{"type":"attachment","length":9,"filename":"crash.dmp","content_type":"application/x-dmp","attachment_type":"event.minidump"}"#,
        "\n",
        "MDMP\n\r\nxx\n",
        r#"{"type":"attachment","length":14,"filename":"log.txt","content_type":"text/plain","attachment_type":"event.attachment"}"#,
        "\n",
        "line 1\nline 2\n\n",
    );
    assert_eq!(String::from_utf8(bytes).unwrap(), expected);
}

#[test]
fn sentry_types_parses_what_we_write() {
    let bytes = crash_envelope().to_vec(&dsn(), at(1_700_000_000)).unwrap();
    let parsed = sentry_types::protocol::v7::Envelope::from_slice(&bytes).unwrap();
    assert_eq!(parsed.items().count(), 3);
    assert_eq!(parsed.uuid().map(|u| u.simple().to_string()), Some(EVENT_ID.to_owned()));
}

#[test]
fn event_id_must_be_32_hex_and_match_the_event() {
    assert!("xyz".parse::<EventId>().is_err());
    assert_eq!("0123456789ABCDEF0123456789ABCDEF".parse::<EventId>().unwrap().as_str(), EVENT_ID);
    assert!(matches!(
        Envelope::new(EVENT_ID.parse().unwrap(), serde_json::json!({"event_id": "ffffffffffffffffffffffffffffffff"})),
        Err(EnvelopeError::EventIdMismatch { .. })
    ));
}
