//! Configuration from variables and files: values, precedence, and errors that name the key.

use std::time::Duration;

use logcollect::{Config, ExchangeType, Format, Setting};

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
    for key in logcollect::SPOOL_KEYS {
        assert!(e.contains(key), "`{e}` lacks `{key}`");
    }
    let e = error(&[("LOGCOLLECT_EXCHANGE_NAME", "x")]);
    assert!(e.contains("unknown key `exchange_name`"), "{e}");
    assert!(e.contains("LOGCOLLECT_EXCHANGE_NAME"), "{e}");
    assert!(
        e.contains("broker_uri") && e.contains("queue_capacity"),
        "{e}"
    );
    for key in logcollect::CONFIG_KEYS {
        assert!(e.contains(key), "`{e}` lacks `{key}`");
    }
    // A table given one value.
    let e = error(&[("LOGCOLLECT_SPOOL", "/var/spool/app")]);
    assert!(
        e.contains("`spool` must be a table") && e.contains("LOGCOLLECT_SPOOL__"),
        "{e}"
    );
}

#[test]
fn the_key_lists_hold_every_declared_setting() {
    for setting in Config::SETTINGS {
        let key = setting.key();
        match key.split_once('.') {
            None => assert!(logcollect::CONFIG_KEYS.contains(&key), "{key}"),
            Some((table, name)) => {
                assert!(logcollect::CONFIG_KEYS.contains(&table), "{key}");
                let names = match table {
                    "spool" => logcollect::SPOOL_KEYS,
                    "batch" => logcollect::BATCH_KEYS,
                    "redis" => logcollect::REDIS_KEYS,
                    "mongodb" => logcollect::MONGODB_KEYS,
                    "rate_limit" => logcollect::RATE_LIMIT_KEYS,
                    _ => panic!("{key}: an undeclared table"),
                };
                assert!(names.contains(&name), "{key}");
            }
        }
    }
    let declared = |key: &str| Config::SETTINGS.iter().any(|s| s.key() == key);
    for key in logcollect::CONFIG_KEYS {
        let table = ["spool", "batch", "redis", "mongodb", "rate_limit"].contains(key);
        assert!(declared(key) || table, "{key}");
    }
    for key in logcollect::SPOOL_KEYS {
        assert!(declared(&format!("spool.{key}")), "{key}");
    }
    for key in logcollect::BATCH_KEYS {
        assert!(declared(&format!("batch.{key}")), "{key}");
    }
    for key in logcollect::MONGODB_KEYS {
        assert!(declared(&format!("mongodb.{key}")), "{key}");
    }
    for key in logcollect::RATE_LIMIT_KEYS {
        assert!(declared(&format!("rate_limit.{key}")), "{key}");
    }
}

/// Every default, written as a variable or a file would give it, reads back as the default:
/// what a setting shows and what it reads agree.
#[test]
fn every_default_reads_back_from_variables_and_from_a_file() {
    let shown: Vec<(&Setting, String)> = Config::SETTINGS
        .iter()
        .filter_map(|s| Some((s, s.default_value()?)))
        .collect();
    assert!(shown.len() > 20, "{shown:?}");

    let from_variables: Vec<(String, String)> = shown
        .iter()
        .map(|(s, value)| (s.variable(), value.clone()))
        .collect();
    assert_eq!(
        Config::from_vars(from_variables).unwrap(),
        Config::default()
    );

    let mut document = serde_json::Map::new();
    for (setting, value) in &shown {
        match setting.key().split_once('.') {
            None => {
                document.insert(setting.key().to_string(), value.clone().into());
            }
            Some((table, name)) => {
                document
                    .entry(table)
                    .or_insert_with(|| serde_json::Value::Object(Default::default()))
                    .as_object_mut()
                    .unwrap()
                    .insert(name.to_string(), value.clone().into());
            }
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("logcollect.json");
    std::fs::write(&path, serde_json::to_vec(&document).unwrap()).unwrap();
    assert_eq!(
        Config::from_vars(vars(&[("LOGCOLLECT_CONFIG", path.to_str().unwrap())])).unwrap(),
        Config::default()
    );
}

/// The settings whose allowed values include `bogus!`: free text (names, a template, a
/// directory, field names, a key; `level` because in `EnvFilter` directives a bare word is a
/// target name). Every other setting must refuse it.
const TAKE_ANY_TEXT: &[&str] = &[
    "exchange",
    "routing_key",
    "level",
    // like `level`, a log filter: a bare word is a target name
    "console_level",
    "service_name",
    "service_version",
    "service_environment",
    "event_dataset",
    "hostname",
    "redact_fields",
    "redact_fields_extra",
    "redact_hash_key",
    "spool.dir",
    // any text is a Redis key
    "redis.key",
    // any text is a database or collection name (the server judges it)
    "mongodb.database",
    "mongodb.collection",
];

/// Whatever setting a bad value is given to, the error names the key, its variable and what is
/// allowed, once; every setting that is not free text refuses it, and free text reads it back.
#[test]
fn every_bad_value_error_names_the_key_its_variable_and_what_is_allowed() {
    let mut refused = Vec::new();
    let mut taken = Vec::new();
    for setting in Config::SETTINGS.iter().filter(|s| !s.has_entries()) {
        let variable = setting.variable();
        let e = match Config::from_vars(vars(&[(variable.as_str(), "bogus!")])) {
            Ok(c) => {
                let value = setting.value(&c);
                assert!(
                    value.as_deref().is_some_and(|v| v.contains("bogus!")),
                    "`{}` took `bogus!` and holds {value:?}",
                    setting.key()
                );
                taken.push(setting.key());
                continue;
            }
            Err(e) => e.to_string(),
        };
        for needle in [
            format!("`{}`", setting.key()),
            variable.clone(),
            format!("allowed: {}", setting.allowed()),
        ] {
            assert!(e.contains(&needle), "`{e}` lacks `{needle}`");
        }
        assert_eq!(e.matches("allowed").count(), 1, "{e}");
        refused.push(setting.key());
    }
    assert_eq!(taken, TAKE_ANY_TEXT, "the settings that took `bogus!`");
    for key in [
        "broker_uri",
        "exchange_type",
        "format",
        "console",
        "queue_capacity",
        "overflow",
        "block_timeout_ms",
        "spool.max_bytes",
        "spool.when_full",
        "spool.fsync_interval_ms",
        "diagnostics_interval_ms",
    ] {
        assert!(refused.contains(&key), "`{key}` took `bogus!`");
    }
    assert_eq!(
        refused.len() + taken.len(),
        Config::SETTINGS.iter().filter(|s| !s.has_entries()).count()
    );
}

#[test]
fn errors_do_not_repeat_a_broker_uri_that_may_hold_a_password() {
    let e = error(&[(
        "LOGCOLLECT_BROKER_URI",
        "amqp://user:s3cret@host:notaport/%2f",
    )]);
    assert!(e.contains("`broker_uri`") && e.contains("amqp://"), "{e}");
    assert!(!e.contains("s3cret"), "{e}");
}

#[test]
fn an_invalid_rust_log_is_named_as_such() {
    let e = error(&[("RUST_LOG", "info,=[")]);
    assert!(e.contains("RUST_LOG") && e.contains("EnvFilter"), "{e}");
    assert!(!e.contains("LOGCOLLECT_LEVEL)"), "{e}");
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
            &[
                "`queue_capacity`",
                "LOGCOLLECT_QUEUE_CAPACITY",
                "at least 1",
            ],
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
        (
            "LOGCOLLECT_LEVEL",
            "info,=[",
            &["`level`", "LOGCOLLECT_LEVEL", "EnvFilter"],
        ),
        (
            "LOGCOLLECT_CONFIRM_WINDOW",
            "0",
            &["`confirm_window`", "at least 1"],
        ),
        (
            "LOGCOLLECT_FORMAT",
            "",
            &["`format`", "LOGCOLLECT_FORMAT", "ecs, classic"],
        ),
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
        assert!(
            e.matches("allowed").count() <= 1,
            "{key}={value}: what is allowed is said more than once: `{e}`"
        );
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
        .expect_err("error");
    assert!(matches!(e, logcollect::Error::Config(_)), "{e}");
    let e = logcollect::builder()
        .exchange("x".repeat(300))
        .build()
        .expect_err("error");
    assert!(e.to_string().contains("`exchange`"), "{e}");
    let e = logcollect::builder()
        .queue_capacity(0)
        .build()
        .expect_err("error");
    assert!(e.to_string().contains("queue_capacity"), "{e}");
}

#[test]
fn broker_uri_is_a_list_of_nodes_in_a_file_or_comma_separated_in_a_variable() {
    let c = Config::from_vars(vars(&[(
        "LOGCOLLECT_BROKER_URI",
        " amqps://u:p@rabbit-1:5671/%2f , amqps://u:p@rabbit-2:5671/%2f",
    )]))
    .unwrap();
    assert_eq!(
        c.broker_uri,
        "amqps://u:p@rabbit-1:5671/%2f , amqps://u:p@rabbit-2:5671/%2f"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("logcollect.toml");
    std::fs::write(
        &file,
        "broker_uri = [\"amqp://u:p@a:5672/%2f\", \"amqp://u:p@b:5672/%2f\"]\n\
         redact_fields = [\"password\", \"PIN\"]\n\
         redact_detectors = [\"jwt\", \"card_number\"]\n\
         redact_with = \"hash\"\n",
    )
    .unwrap();
    let path = file.display().to_string();
    let c = Config::from_vars(vars(&[("LOGCOLLECT_CONFIG", path.as_str())])).unwrap();
    assert_eq!(c.broker_uri, "amqp://u:p@a:5672/%2f,amqp://u:p@b:5672/%2f");
    assert_eq!(c.redact_fields, ["password", "PIN"]);
    assert_eq!(
        c.redact_detectors,
        [logcollect::Detector::Jwt, logcollect::Detector::CardNumber]
    );
    assert_eq!(c.redact_with, logcollect::RedactWith::Hash);

    // An empty entry, a bad entry: errors that name the entry, never its text.
    let e = error(&[(
        "LOGCOLLECT_BROKER_URI",
        "amqp://u:s3cret@a:5672/%2f,,amqp://b",
    )]);
    assert!(
        e.contains("`broker_uri`") && e.contains("entry 2") && e.contains("empty"),
        "{e}"
    );
    assert!(!e.contains("s3cret"), "{e}");
    let e = error(&[(
        "LOGCOLLECT_BROKER_URI",
        "amqp://u:s3cret@a:5672/%2f,amqp://u:s3cret@b:notaport/%2f",
    )]);
    assert!(
        e.contains("entry 2") && e.contains("not a valid AMQP URI"),
        "{e}"
    );
    assert!(!e.contains("s3cret"), "{e}");
    let e = error(&[("LOGCOLLECT_REDACT_DETECTORS", "jwt,,bearer")]);
    assert!(
        e.contains("redact_detectors") && e.contains("entry 2"),
        "{e}"
    );
    let e = error(&[("LOGCOLLECT_REDACT_DETECTORS", "jwt,ssn")]);
    assert!(e.contains("redact_detectors") && e.contains("`ssn`"), "{e}");
    // Empty: no detectors, no names.
    let c = Config::from_vars(vars(&[
        ("LOGCOLLECT_REDACT_DETECTORS", ""),
        ("LOGCOLLECT_REDACT_FIELDS", ""),
    ]))
    .unwrap();
    assert!(c.redact_detectors.is_empty() && c.redact_fields.is_empty());
}

#[test]
fn debug_of_config_masks_every_password_and_the_hash_key() {
    let mut c = Config::default();
    c.broker_uri = "amqps://app:pw-one@a:5671/%2f,amqp://app:pw-two@b:5672/%2f".to_string();
    c.redact_hash_key = Some("hash-key-secret".to_string());
    for shown in [format!("{c:?}"), format!("{c:#?}")] {
        for secret in ["pw-one", "pw-two", "hash-key-secret"] {
            assert!(!shown.contains(secret), "{secret} in {shown}");
        }
        assert!(shown.contains("amqps://app:***@a:5671/%2f"), "{shown}");
        assert!(shown.contains("amqp://app:***@b:5672/%2f"), "{shown}");
        assert!(shown.contains("exchange"), "{shown}");
    }
    // The default guest password too.
    assert!(!format!("{:?}", Config::default()).contains("guest:guest"));
}

/// The compose stack's `.env` is an environment applications get started with (`docker compose
/// run`, `set -a; . compose/.env`): none of its variables may be taken for a crate setting, or
/// `init()` fails on an unknown key.
#[test]
fn the_compose_stacks_variables_never_collide_with_the_crates() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/compose/.env");
    let text = std::fs::read_to_string(path).expect("compose/.env");
    let pairs: Vec<(String, String)> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (k, v) = l.split_once('=').expect("KEY=value");
            (k.to_string(), v.to_string())
        })
        .collect();
    assert!(pairs.len() > 10, "{pairs:?}");
    assert!(pairs.iter().any(|(k, _)| k == "LCSTACK_NAMESPACE"));
    let config = Config::from_vars(pairs).expect("compose/.env is a valid environment");
    assert_eq!(config, Config::default());
    // And the crate stays strict: a stack-like variable under the crate's prefix is refused.
    let e = error(&[("LOGCOLLECT_NAMESPACE", "default")]);
    assert!(e.contains("unknown key `namespace`"), "{e}");
}

/// `Config` is a table of the application's own configuration file, read by serde with the
/// keys, values, checks and errors of `LOGCOLLECT_CONFIG`'s file.
#[test]
fn config_is_a_section_of_the_applications_own_file() {
    #[derive(serde::Deserialize)]
    #[allow(dead_code)]
    struct App {
        port: u16,
        logcollect: Config,
    }
    let app: App = toml::from_str(
        r#"
        port = 8080

        [logcollect]
        broker_uri = ["amqp://a:p@node1:5672/%2f", "amqp://a:p@node2:5672/%2f"]
        exchange = "apps"
        format = "classic"
        level = "info,billing=debug"
        console_level = "warn"
        enabled = false
        queue_capacity = 1024
        shutdown_timeout_ms = 2500
        redact_fields_extra = ["pin_code"]

        [logcollect.identity]
        project = "billing"

        [logcollect.spool]
        dir = "/var/spool/app"
        max_bytes = 1048576

        [logcollect.batch]
        linger_ms = 5
        "#,
    )
    .expect("the section reads");
    let c = app.logcollect;
    assert_eq!(
        c.broker_uri,
        "amqp://a:p@node1:5672/%2f,amqp://a:p@node2:5672/%2f"
    );
    assert_eq!(c.exchange, "apps");
    assert_eq!(c.format, Format::Classic);
    assert_eq!(c.level.as_deref(), Some("info,billing=debug"));
    assert_eq!(c.console_level.as_deref(), Some("warn"));
    assert!(!c.enabled);
    assert_eq!(c.queue_capacity, 1024);
    assert_eq!(c.shutdown_timeout, Duration::from_millis(2500));
    assert_eq!(c.redact_fields_extra, ["pin_code"]);
    assert_eq!(
        c.identity.get("project").map(String::as_str),
        Some("billing")
    );
    assert_eq!(
        c.spool.dir.as_deref(),
        Some(std::path::Path::new("/var/spool/app"))
    );
    assert_eq!(c.spool.max_bytes, 1 << 20);
    assert_eq!(c.batch.linger, Duration::from_millis(5));
    // What is not in the section keeps its default.
    assert_eq!(c.confirm_window, Config::default().confirm_window);

    // The errors of a file: an unknown key, an invalid value, a failed check, each named.
    let err = |section: &str| match toml::from_str::<App>(&format!(
        "port = 1\n[logcollect]\n{section}"
    )) {
        Ok(_) => panic!("expected an error for {section}"),
        Err(e) => e.to_string(),
    };
    let e = err("exchnage = \"apps\"");
    assert!(e.contains("unknown key `exchnage`"), "{e}");
    let e = err("format = \"xml\"");
    assert!(e.contains("`format`") && e.contains("ecs, classic"), "{e}");
    let e = err("queue_capacity = 0");
    assert!(
        e.contains("`queue_capacity`") && e.contains("at least 1"),
        "{e}"
    );
    let e = err("console_level = \"=[\"");
    assert!(e.contains("`console_level`"), "{e}");
    let e = err("[logcollect.spool]\nnope = 1");
    assert!(e.contains("unknown key `spool.nope`"), "{e}");
}

#[test]
fn enabled_and_console_level_are_read_from_variables() {
    let c = Config::from_vars(vars(&[
        ("LOGCOLLECT_ENABLED", "false"),
        ("LOGCOLLECT_CONSOLE_LEVEL", "warn,app=info"),
    ]))
    .expect("config");
    assert!(!c.enabled);
    assert_eq!(c.console_level.as_deref(), Some("warn,app=info"));
    assert!(Config::default().enabled);
    let e = error(&[("LOGCOLLECT_ENABLED", "maybe")]);
    assert!(
        e.contains("LOGCOLLECT_ENABLED") && e.contains("true or false"),
        "{e}"
    );
}

/// The scripts' own variables (scripts/, the stack's shell scripts) are never taken for
/// settings: an inherited `LOGCOLLECT_<NAME>` that is no setting makes `from_env` fail, so
/// theirs are `LOGCOLLECT_TEST_*` (or `LCSTACK_*`).
#[test]
fn the_scripts_own_variables_are_not_mistaken_for_settings() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let settings: Vec<String> = Config::SETTINGS.iter().map(|s| s.variable()).collect();
    let mut checked = 0;
    for dir in ["scripts", "compose/rabbitmq", "compose/demo"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir)) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(text) = std::fs::read_to_string(entry.path()) else {
                continue;
            };
            let mut rest = text.as_str();
            while let Some(at) = rest.find("LOGCOLLECT_") {
                rest = &rest[at..];
                let end = rest
                    .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
                    .unwrap_or(rest.len());
                let name = &rest[..end];
                rest = &rest[end..];
                checked += 1;
                let setting = settings.iter().any(|s| s == name)
                    || name.starts_with("LOGCOLLECT_IDENTITY__")
                    || name == "LOGCOLLECT_"
                    || name.ends_with("__");
                assert!(
                    setting || name == "LOGCOLLECT_CONFIG" || name.starts_with("LOGCOLLECT_TEST_"),
                    "{}: `{name}` is neither a setting nor LOGCOLLECT_TEST_*",
                    entry.path().display()
                );
            }
        }
    }
    assert!(checked > 10, "the scripts were not found");
}
