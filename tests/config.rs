//! Configuration from variables and files: values, precedence, and errors that name the key.

use std::time::Duration;

use logcollect::{Config, ExchangeType, Format};

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn error(pairs: &[(&str, &str)]) -> String {
    match Config::from_vars(vars(pairs)) {
        Ok(c) => panic!("expected an error for {pairs:?}, got {c:?}"),
        Err(e) => e.to_string(),
    }
}

#[test]
fn defaults_match_the_documented_ones() {
    let c = Config::from_vars(vars(&[])).unwrap();
    assert_eq!(c, Config::default());
    assert_eq!(c.broker_uri, "amqp://guest:guest@127.0.0.1:5672/%2f");
    assert_eq!(c.exchange, "logstash");
    assert_eq!(c.exchange_type, ExchangeType::Topic);
    assert_eq!(c.routing_key, "logstash.{target}");
    assert_eq!(c.format, Format::Ecs);
    assert_eq!(c.level, None);
    assert!(!c.console);
    assert_eq!(c.queue_capacity, 65_536);
    assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
}

#[test]
fn variables_set_every_kind_of_value() {
    let c = Config::from_vars(vars(&[
        (
            "LOGCOLLECT_BROKER_URI",
            "amqps://u:p@rabbit.example:5671/logs",
        ),
        ("LOGCOLLECT_EXCHANGE", "applogs"),
        ("LOGCOLLECT_EXCHANGE_TYPE", "Direct"),
        ("LOGCOLLECT_ROUTING_KEY", "logs.{service}"),
        ("LOGCOLLECT_FORMAT", "classic"),
        ("LOGCOLLECT_LEVEL", "warn,billing=debug"),
        ("LOGCOLLECT_CONSOLE", "true"),
        ("LOGCOLLECT_QUEUE_CAPACITY", "1000"),
        ("LOGCOLLECT_IDENTITY__PROJECT", "billing"),
        ("LOGCOLLECT_IDENTITY__APPLICATION", "worker"),
        ("LOGCOLLECT_HOSTNAME_FQDN", "true"),
        ("LOGCOLLECT_SHUTDOWN_TIMEOUT_MS", "2500"),
        ("LOGCOLLECT_CONFIRM_WINDOW", "64"),
        ("RUST_LOG", "trace"),
        // Not configuration keys: ignored.
        ("LOGCOLLECT_TEST_AMQP_URL", "amqp://elsewhere"),
        ("OTHER_VARIABLE", "x"),
    ]))
    .unwrap();
    assert_eq!(c.broker_uri, "amqps://u:p@rabbit.example:5671/logs");
    assert_eq!(c.exchange, "applogs");
    assert_eq!(c.exchange_type, ExchangeType::Direct);
    assert_eq!(c.routing_key, "logs.{service}");
    assert_eq!(c.format, Format::Classic);
    assert_eq!(
        c.level.as_deref(),
        Some("warn,billing=debug"),
        "LOGCOLLECT_LEVEL wins over RUST_LOG"
    );
    assert!(c.console && c.hostname_fqdn);
    assert_eq!(c.queue_capacity, 1000);
    assert_eq!(c.confirm_window, 64);
    assert_eq!(c.shutdown_timeout, Duration::from_millis(2500));
    assert_eq!(
        c.identity.get("project").map(String::as_str),
        Some("billing")
    );
    assert_eq!(
        c.identity.get("application").map(String::as_str),
        Some("worker")
    );
    assert_eq!(c.identity.len(), 2);
}

#[test]
fn rust_log_is_the_fallback_level() {
    let c = Config::from_vars(vars(&[("RUST_LOG", "debug")])).unwrap();
    assert_eq!(c.level.as_deref(), Some("debug"));
}

#[test]
fn a_file_named_by_logcollect_config_is_read_and_variables_override_it() {
    let dir = std::env::temp_dir().join(format!("logcollect-config-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("logcollect.toml");
    std::fs::write(
        &path,
        "exchange = \"from-file\"\nformat = \"classic\"\nqueue_capacity = 42\n\n[identity]\nproject = \"billing\"\napplication = \"from-file\"\n",
    )
    .unwrap();
    let c = Config::from_vars(vars(&[
        ("LOGCOLLECT_CONFIG", path.to_str().unwrap()),
        ("LOGCOLLECT_IDENTITY__APPLICATION", "from-env"),
        ("LOGCOLLECT_FORMAT", "ecs"),
    ]))
    .unwrap();
    assert_eq!(c.exchange, "from-file");
    assert_eq!(c.queue_capacity, 42);
    assert_eq!(c.format, Format::Ecs);
    assert_eq!(
        c.identity.get("project").map(String::as_str),
        Some("billing")
    );
    assert_eq!(
        c.identity.get("application").map(String::as_str),
        Some("from-env")
    );

    std::fs::write(&path, "exchnage = \"typo\"\n").unwrap();
    let e = error(&[("LOGCOLLECT_CONFIG", path.to_str().unwrap())]);
    assert!(
        e.contains("unknown key `exchnage`") && e.contains("exchange"),
        "{e}"
    );
    std::fs::remove_dir_all(&dir).unwrap();

    let e = error(&[("LOGCOLLECT_CONFIG", "/nonexistent/logcollect.toml")]);
    assert!(
        e.contains("LOGCOLLECT_CONFIG") && e.contains("does not exist"),
        "{e}"
    );
}

#[test]
fn the_spool_and_overflow_keys_are_read_from_variables() {
    let c = Config::from_vars(vars(&[
        ("LOGCOLLECT_SPOOL__DIR", "/var/spool/app"),
        ("LOGCOLLECT_SPOOL__MAX_BYTES", "1048576"),
        ("LOGCOLLECT_SPOOL__WHEN_FULL", "drop_oldest"),
        ("LOGCOLLECT_SPOOL__FSYNC_INTERVAL_MS", "0"),
        ("LOGCOLLECT_BLOCK_TIMEOUT_MS", "250"),
    ]))
    .unwrap();
    assert_eq!(
        c.spool.dir.as_deref(),
        Some(std::path::Path::new("/var/spool/app"))
    );
    assert_eq!(c.spool.max_bytes, 1 << 20);
    assert_eq!(c.spool.when_full, logcollect::WhenFull::DropOldest);
    assert_eq!(c.spool.fsync_interval, std::time::Duration::ZERO);
    assert_eq!(c.block_timeout, std::time::Duration::from_millis(250));
    // With a spool and no overflow set, the queue spills to it.
    assert_eq!(
        (c.overflow, c.overflow_policy()),
        (None, logcollect::Overflow::Spill)
    );
    let c = Config::from_vars(vars(&[("LOGCOLLECT_OVERFLOW", "drop_oldest")])).unwrap();
    assert_eq!(c.overflow_policy(), logcollect::Overflow::DropOldest);
    assert_eq!(
        Config::default().overflow_policy(),
        logcollect::Overflow::DropNewest
    );
}

#[test]
fn unknown_keys_are_errors_that_list_the_allowed_ones() {
    let e = error(&[("LOGCOLLECT_SPOOL__SIZE", "1")]);
    assert!(e.contains("unknown key `spool.size`"), "{e}");
    assert!(
        e.contains("LOGCOLLECT_SPOOL__SIZE") && e.contains("max_bytes"),
        "{e}"
    );
    let e = error(&[("LOGCOLLECT_EXCHANGE_NAME", "x")]);
    assert!(e.contains("unknown key `exchange_name`"), "{e}");
    assert!(e.contains("LOGCOLLECT_EXCHANGE_NAME"), "{e}");
    assert!(
        e.contains("broker_uri") && e.contains("queue_capacity"),
        "{e}"
    );
}

#[test]
fn invalid_values_are_errors_that_name_the_key_and_what_is_allowed() {
    let cases: &[(&str, &str, &[&str])] = &[
        (
            "LOGCOLLECT_FORMAT",
            "xml",
            &["`format`", "xml", "ecs, classic"],
        ),
        (
            "LOGCOLLECT_EXCHANGE_TYPE",
            "queue",
            &["`exchange_type`", "topic, direct, fanout, headers"],
        ),
        (
            "LOGCOLLECT_QUEUE_CAPACITY",
            "lots",
            &[
                "`queue_capacity`",
                "LOGCOLLECT_QUEUE_CAPACITY",
                "positive integer",
            ],
        ),
        (
            "LOGCOLLECT_QUEUE_CAPACITY",
            "0",
            &["`queue_capacity`", "at least 1"],
        ),
        ("LOGCOLLECT_QUEUE_CAPACITY", "-5", &["`queue_capacity`"]),
        (
            "LOGCOLLECT_CONSOLE",
            "maybe",
            &["`console`", "true or false"],
        ),
        (
            "LOGCOLLECT_BROKER_URI",
            "http://nope",
            &["`broker_uri`", "amqp://"],
        ),
        (
            "LOGCOLLECT_BROKER_URI",
            "amqp://host:notaport",
            &["`broker_uri`"],
        ),
        ("LOGCOLLECT_LEVEL", "info,=[", &["`level`", "EnvFilter"]),
        (
            "LOGCOLLECT_SHUTDOWN_TIMEOUT_MS",
            "1.5s",
            &["`shutdown_timeout_ms`", "milliseconds"],
        ),
        (
            "LOGCOLLECT_OVERFLOW",
            "wait",
            &["`overflow`", "spill, drop_newest, drop_oldest, block"],
        ),
        (
            "LOGCOLLECT_OVERFLOW",
            "spill",
            &["`overflow`", "spool.dir", "LOGCOLLECT_SPOOL__DIR"],
        ),
        (
            "LOGCOLLECT_SPOOL__WHEN_FULL",
            "block",
            &[
                "`spool.when_full`",
                "LOGCOLLECT_SPOOL__WHEN_FULL",
                "drop_newest, drop_oldest",
            ],
        ),
        (
            "LOGCOLLECT_SPOOL__MAX_BYTES",
            "1GB",
            &["`spool.max_bytes`", "LOGCOLLECT_SPOOL__MAX_BYTES"],
        ),
    ];
    for (key, value, needles) in cases {
        let e = error(&[(key, value)]);
        for needle in *needles {
            assert!(e.contains(needle), "{key}={value}: `{e}` lacks `{needle}`");
        }
    }
    let e = error(&[
        ("LOGCOLLECT_SPOOL__DIR", "/tmp/s"),
        ("LOGCOLLECT_SPOOL__MAX_BYTES", "100"),
    ]);
    assert!(
        e.contains("`spool.max_bytes`") && e.contains("at least"),
        "{e}"
    );
    let long = "x".repeat(256);
    let e = error(&[("LOGCOLLECT_EXCHANGE", long.as_str())]);
    assert!(e.contains("`exchange`") && e.contains("255"), "{e}");
}

#[test]
fn the_builder_rejects_bad_input_with_an_error_not_a_panic() {
    let e = logcollect::builder()
        .broker_uri("not a uri")
        .build()
        .err()
        .expect("error");
    assert!(matches!(e, logcollect::Error::Config(_)), "{e}");
    let e = logcollect::builder()
        .exchange("x".repeat(300))
        .build()
        .err()
        .expect("error");
    assert!(e.to_string().contains("`exchange`"), "{e}");
    let e = logcollect::builder()
        .queue_capacity(0)
        .build()
        .err()
        .expect("error");
    assert!(e.to_string().contains("queue_capacity"), "{e}");
}
