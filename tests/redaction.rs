//! Redaction end to end, through the real broker, in both formats: secret field names as people
//! write them (run together, upper case, plural) and secrets inside a message and a string field
//! (`password=hunter2`, `Authorization: Basic …`, a query string's token) arrive redacted, their
//! keys kept; look-alike names (`tokenizer`, `passenger`) and ordinary values (an order number, a
//! UUID, a timestamp) arrive as they were logged. Real RabbitMQ (tests/common).

mod common;

use std::time::Duration;

use common::Capture;
use logcollect::Format;
use serde_json::{json, Value};
use tracing_subscriber::layer::SubscriberExt;

/// What the message of the second event says, secrets and look-alikes together.
const MESSAGE: &str = "order 4111111111111112 for 550e8400-e29b-41d4-a716-446655440000 \
                       at 2024-01-15T12:30:45.123Z: password=hunter2, \
                       Authorization: Basic dXNlcjpwYXNz, tokenizer=fast passenger=3";

/// The secrets logged, each of which must be gone from every document.
const SECRETS: &[&str] = &[
    "np-secret-1",
    "pg-secret-2",
    "cs-secret-3",
    "at-secret-4",
    "sid-secret-5",
    "pp-secret-6",
    "ck-secret-7",
    "qs-secret-8",
    "hunter2",
    "dXNlcjpwYXNz",
];

/// Ships the two events with the default rules in `format`; the documents by `seq_no`.
fn ship(format: Format) -> [Value; 2] {
    let mut capture = Capture::fresh();
    let (layer, guard) = logcollect::builder()
        .broker_uri(common::broker_url())
        .exchange(capture.exchange.clone())
        .format(format)
        .build()
        .expect("build");
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        tracing::info!(
            seq_no = 0u64,
            newpassword = "np-secret-1",
            PGPASSWORD = "pg-secret-2",
            clientsecret = "cs-secret-3",
            accesstoken = "at-secret-4",
            sessionid = "sid-secret-5",
            passphrase = "pp-secret-6",
            Cookies = "ck-secret-7",
            tokenizer = "fast",
            passenger = 3u64,
            "fields"
        );
        tracing::info!(
            seq_no = 1u64,
            query = "page=2&access_token=qs-secret-8&sort=asc",
            "{MESSAGE}"
        );
    });
    assert!(
        guard.flush(Duration::from_secs(30)).is_complete(),
        "{}",
        guard.stats()
    );
    drop(guard);
    let mut docs = common::documents(&capture.receive(2, Duration::from_secs(30)));
    assert_eq!(docs.len(), 2, "{format}: {docs:?}");
    for doc in &docs {
        let text = doc.to_string();
        for secret in SECRETS {
            assert!(!text.contains(secret), "{format}: {secret} leaked: {text}");
        }
    }
    let seq_no = |d: &Value| match format {
        Format::Ecs => d["fields"]["seq_no"].as_i64(),
        _ => d["seq_no"].as_i64(),
    };
    docs.sort_by_key(seq_no);
    assert_eq!(
        docs.iter().map(seq_no).collect::<Vec<_>>(),
        [Some(0), Some(1)],
        "{format}"
    );
    [docs[0].clone(), docs[1].clone()]
}

fn field<'a>(format: Format, doc: &'a Value, name: &str) -> &'a Value {
    match format {
        Format::Ecs => &doc["fields"][name],
        _ => &doc[name],
    }
}

#[test]
fn secrets_arrive_redacted_and_look_alikes_unchanged_in_both_formats() {
    for format in [Format::Ecs, Format::Classic] {
        let [fields, message] = ship(format);
        for name in [
            "newpassword",
            "PGPASSWORD",
            "clientsecret",
            "accesstoken",
            "sessionid",
            "passphrase",
            "Cookies",
        ] {
            assert_eq!(
                field(format, &fields, name),
                &json!("[REDACTED]"),
                "{format}: {name}"
            );
        }
        assert_eq!(
            field(format, &fields, "tokenizer"),
            &json!("fast"),
            "{format}"
        );
        assert_eq!(field(format, &fields, "passenger"), &json!(3), "{format}");
        assert_eq!(fields["message"], "fields", "{format}");

        assert_eq!(
            message["message"],
            "order 4111111111111112 for 550e8400-e29b-41d4-a716-446655440000 \
             at 2024-01-15T12:30:45.123Z: password=[REDACTED], \
             Authorization: Basic [REDACTED], tokenizer=fast passenger=3",
            "{format}"
        );
        assert_eq!(
            field(format, &message, "query"),
            &json!("page=2&access_token=[REDACTED]&sort=asc"),
            "{format}"
        );
    }
}
