//! Feature `metrics` (docs/metrics.md): after a known load, the real Prometheus exporter's
//! rendering shows the `logcollect_*` counters with the values the shipper counted — every event
//! sent confirmed, every oversize one dropped under its reason — and the latency histogram one
//! sample per confirmed event. One test: the recorder is process-wide, as in an application.
//! examples/metrics.rs, scraped over HTTP and parsed by the Prometheus project's parser:
//! tests/elk/test_metrics_scrape.py.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use common::Capture;
use metrics_exporter_prometheus::PrometheusBuilder;
use tracing_subscriber::layer::SubscriberExt;

/// Parses Prometheus text exposition into `name{labels}` → value, checking each line's shape
/// (a comment, a blank line, or a sample: a valid metric name, balanced quoted labels, a number).
fn parse(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (series, value) = line.rsplit_once(' ').expect("a sample line has a value");
        let name_end = series.find('{').unwrap_or(series.len());
        let name = &series[..name_end];
        assert!(
            !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':')
                && !name.starts_with(|c: char| c.is_ascii_digit()),
            "bad metric name in {line:?}"
        );
        if name_end < series.len() {
            assert!(series.ends_with('}'), "unclosed labels in {line:?}");
            assert_eq!(
                series.matches('"').count() % 2,
                0,
                "bad quoting in {line:?}"
            );
        }
        let value: f64 = value
            .parse()
            .unwrap_or_else(|_| panic!("bad value in {line:?}"));
        samples.insert(series.to_string(), value);
    }
    samples
}

#[test]
fn the_exporter_shows_what_was_sent_confirmed_and_dropped() {
    let handle = PrometheusBuilder::new()
        .install_recorder()
        .expect("the test's recorder");
    let mut capture = Capture::fresh();
    let sent = 300u64;
    let oversize = 7u64;
    let (layer, guard) = logcollect::builder()
        .broker_uri(common::broker_url())
        .exchange(&capture.exchange)
        .configure(|c| c.max_message_bytes = 4000)
        .build()
        .expect("build");
    let huge = "h".repeat(10_000);
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for seq_no in 0..sent {
            tracing::info!(seq_no, "counted");
        }
        for seq_no in 0..oversize {
            tracing::info!(seq_no, huge = huge.as_str(), "too big");
        }
    });
    assert!(guard.flush(Duration::from_secs(60)).is_complete());
    let docs = common::documents(&capture.receive(sent as usize, Duration::from_secs(30)));
    let (seq_nos, duplicates) = common::distinct_ints(&docs, "/fields/seq_no");
    assert_eq!((seq_nos.len(), duplicates), (sent as usize, 0));
    assert_eq!(seq_nos, (0..sent as i64).collect::<HashSet<_>>());

    // The snapshot reaches the recorder within a tick of the metrics thread.
    let confirmed = format!("logcollect_events_confirmed_total{{transport=\"amqp\"}} {sent}");
    assert!(
        common::wait_for(Duration::from_secs(15), || handle
            .render()
            .lines()
            .any(|l| l == confirmed)),
        "no {confirmed:?} in:\n{}",
        handle.render()
    );
    let text = handle.render();
    let m = parse(&text);
    let value = |series: &str| -> f64 {
        *m.get(series)
            .unwrap_or_else(|| panic!("{series} is not exported:\n{text}"))
    };
    let amqp = |name: &str| value(&format!("{name}{{transport=\"amqp\"}}"));
    let dropped = |reason: &str| {
        value(&format!(
            "logcollect_events_dropped_total{{transport=\"amqp\",reason=\"{reason}\"}}"
        ))
    };
    let stats = guard.stats();
    assert_eq!(
        amqp("logcollect_events_accepted_total"),
        (sent + oversize) as f64
    );
    assert_eq!(amqp("logcollect_events_confirmed_total"), sent as f64);
    assert_eq!(dropped("oversize"), oversize as f64);
    assert_eq!(dropped("queue_full"), 0.0);
    assert_eq!(dropped("closed"), 0.0);
    assert_eq!(dropped("spool_full"), 0.0);
    assert_eq!(
        amqp("logcollect_messages_confirmed_total"),
        stats.messages_confirmed as f64
    );
    assert!(stats.messages_confirmed >= 1, "{stats}");
    assert_eq!(amqp("logcollect_events_retried_total"), 0.0);
    assert_eq!(amqp("logcollect_reconnects_total"), 0.0);
    assert_eq!(amqp("logcollect_queue_depth"), 0.0);
    assert_eq!(amqp("logcollect_connected"), 1.0);
    assert_eq!(amqp("logcollect_blocked"), 0.0);
    assert_eq!(amqp("logcollect_spool_bytes"), 0.0);
    assert!(amqp("logcollect_delivery_latency_p99_seconds") > 0.0);
    // One latency sample per confirmed event (the exporter renders the histogram as a summary).
    assert_eq!(
        amqp("logcollect_delivery_latency_seconds_count"),
        sent as f64,
        "{text}"
    );
    // Every series is ours, and labelled only by transport and reason.
    for series in m.keys() {
        assert!(series.starts_with("logcollect_"), "{series}");
        let labels = series.split_once('{').map_or("", |(_, l)| l);
        for label in labels
            .trim_end_matches('}')
            .split(',')
            .filter(|l| !l.is_empty())
        {
            let key = label.split('=').next().unwrap_or_default();
            assert!(
                ["transport", "reason", "quantile"].contains(&key),
                "unexpected label {key} in {series}"
            );
        }
    }
    drop(guard);
    #[cfg(feature = "redis")]
    another_transport_has_its_own_label(&handle);
}

/// A shipper with `transport = redis` in the same process is counted under its own label, the
/// AMQP one's series unchanged.
#[cfg(feature = "redis")]
fn another_transport_has_its_own_label(handle: &metrics_exporter_prometheus::PrometheusHandle) {
    let before = parse(&handle.render());
    let key = format!("logcollect-test.metrics.{}", std::process::id());
    let mut redis = logcollect_test_support::redis::connect();
    let _: () = redis::cmd("DEL").arg(&key).query(&mut redis).expect("DEL");
    let (layer, guard) = logcollect::builder()
        .configure(|c| {
            c.transport = logcollect::TransportKind::Redis;
            c.redis.uri = logcollect_test_support::redis::url();
            c.redis.key = key.clone();
        })
        .build()
        .expect("build");
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for seq_no in 0..5 {
            tracing::info!(seq_no, "to redis");
        }
    });
    // The guard publishes its snapshot once more when it stops.
    assert!(guard.shutdown(Duration::from_secs(30)).is_complete());
    let len: u64 = redis::cmd("LLEN")
        .arg(&key)
        .query(&mut redis)
        .expect("LLEN");
    let _: () = redis::cmd("DEL").arg(&key).query(&mut redis).expect("DEL");
    assert_eq!(len, 5);
    let m = parse(&handle.render());
    let series = |name: &str, transport: &str| format!("{name}{{transport=\"{transport}\"}}");
    for name in [
        "logcollect_events_accepted_total",
        "logcollect_events_confirmed_total",
    ] {
        assert_eq!(m.get(&series(name, "redis")), Some(&5.0), "{name}");
        assert_eq!(
            m.get(&series(name, "amqp")),
            before.get(&series(name, "amqp")),
            "{name}"
        );
    }
    assert_eq!(
        m.get(&series(
            "logcollect_delivery_latency_seconds_count",
            "redis"
        )),
        Some(&5.0)
    );
}
