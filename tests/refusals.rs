//! A broker that says no is reported with its cause and the fix, in `stats.last_error` (and on
//! stderr), while the shipper keeps retrying: wrong credentials, an unknown virtual host, an
//! exchange that exists with another type, a user without permission on the exchange. Once the
//! operator fixes the broker, the events go out.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{documents, Capture};
use lapin::options::{ExchangeDeclareOptions, ExchangeDeleteOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{Connection, ConnectionProperties, ExchangeKind};
use logcollect::{Guard, LogcollectLayer};
use tracing_subscriber::layer::SubscriberExt;

/// The test broker's URI with other credentials or another vhost.
fn uri_with(user: &str, password: &str, vhost: &str) -> String {
    let base = common::broker_url();
    let parsed: lapin::uri::AMQPUri = base.parse().expect("broker URI");
    format!(
        "amqp://{user}:{password}@{}:{}/{vhost}",
        parsed.authority.host, parsed.authority.port
    )
}

fn shipper(uri: String, exchange: &str) -> (LogcollectLayer, Guard) {
    logcollect::builder()
        .broker_uri(uri)
        .exchange(exchange)
        .configure(|c| {
            c.backoff_min = Duration::from_millis(50);
            c.backoff_max = Duration::from_millis(500);
            c.connect_timeout = Duration::from_secs(10);
        })
        .build()
        .expect("build")
}

fn log(layer: LogcollectLayer, n: u64) {
    tracing::subscriber::with_default(tracing_subscriber::registry().with(layer), || {
        for seq_no in 0..n {
            tracing::info!(seq_no, "refused");
        }
    });
}

/// Waits until `last_error` says `what`; fails with the stats otherwise. Nothing is confirmed
/// meanwhile, and the shipper keeps trying.
fn assert_reported(guard: &Guard, what: &[&str]) -> String {
    common::await_stats(
        &format!("last_error with {what:?}"),
        Duration::from_secs(60),
        &guard.shipper(),
        |s| {
            s.last_error
                .as_deref()
                .is_some_and(|e| what.iter().all(|w| e.contains(w)))
        },
    );
    let stats = guard.stats();
    assert_eq!(stats.confirmed, 0, "{stats}");
    let error = stats.last_error.unwrap_or_default();
    assert!(
        !error.contains("guest:") && !error.contains("wrong-password"),
        "a password is shown: {error}"
    );
    error
}

#[test]
fn wrong_credentials_are_reported_as_a_refused_login() {
    let (layer, guard) = shipper(
        uri_with("guest", "wrong-password", "%2f"),
        "logcollect-test-refused",
    );
    log(layer, 1);
    let error = assert_reported(&guard, &["ACCESS_REFUSED", "user name or password"]);
    assert!(error.contains("user `guest`"), "{error}");
    let _ = guard.shutdown(Duration::from_millis(100));
}

#[test]
fn an_unknown_vhost_is_reported_as_such() {
    let vhost = common::unique("no-such-vhost");
    let (layer, guard) = shipper(
        uri_with("guest", "guest", &vhost),
        "logcollect-test-refused",
    );
    log(layer, 1);
    let error = assert_reported(&guard, &["NOT_ALLOWED", "virtual host", &vhost]);
    assert!(error.contains("rabbitmqctl add_vhost"), "{error}");
    let _ = guard.shutdown(Duration::from_millis(100));
}

/// Runs a future on a small runtime of the test's own.
fn block_on<F: std::future::Future>(future: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
        .block_on(future)
}

#[test]
fn an_exchange_of_another_type_is_reported_and_delivery_resumes_once_it_is_fixed() {
    let exchange = common::unique("logcollect-test-x");
    // The operator's exchange: same name, fanout.
    block_on(async {
        let connection =
            Connection::connect(&common::broker_url(), ConnectionProperties::default())
                .await
                .expect("connect");
        let channel = connection.create_channel().await.expect("channel");
        channel
            .exchange_declare(
                ShortString::from(exchange.as_str()),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
            .expect("declare the fanout exchange");
        let _ = connection.close(200, ShortString::from("done")).await;
    });
    let (layer, guard) = shipper(common::broker_url(), &exchange);
    log(layer, 5);
    let error = assert_reported(&guard, &["PRECONDITION_FAILED", &exchange, "topic"]);
    assert!(error.contains("exchange_type"), "{error}");

    // The operator deletes the wrong exchange: the shipper's next attempt declares its own,
    // and once a queue is bound the events are delivered.
    block_on(async {
        let connection =
            Connection::connect(&common::broker_url(), ConnectionProperties::default())
                .await
                .expect("connect");
        let channel = connection.create_channel().await.expect("channel");
        channel
            .exchange_delete(
                ShortString::from(exchange.as_str()),
                ExchangeDeleteOptions::default(),
            )
            .await
            .expect("delete the fanout exchange");
        let _ = connection.close(200, ShortString::from("done")).await;
    });
    let mut capture = Capture::bind(&exchange, "#");
    assert!(
        guard.flush(Duration::from_secs(60)).is_complete(),
        "{}",
        guard.stats()
    );
    assert_eq!(
        documents(&capture.receive(5, Duration::from_secs(30))).len(),
        5
    );
}

/// A user that may read but not configure or write anything, removed on drop.
struct RestrictedUser {
    name: String,
}

impl RestrictedUser {
    fn create(password: &str) -> RestrictedUser {
        let name = common::unique("logcollect-test-user");
        ctl(&["add_user", &name, password]);
        let user = RestrictedUser { name };
        ctl(&["set_permissions", "-p", "/", &user.name, "^$", "^$", ".*"]);
        user
    }
}

impl Drop for RestrictedUser {
    fn drop(&mut self) {
        let _ = Command::new("rabbitmqctl")
            .args(["delete_user", &self.name])
            .output();
    }
}

fn ctl(args: &[&str]) {
    let output = Command::new("rabbitmqctl")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!(
            "this test creates a user with `rabbitmqctl` (Debian package `rabbitmq-server`; run \
             as root or a user allowed to call it): {e}"
        )
        });
    assert!(
        output.status.success(),
        "`rabbitmqctl {}` failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_user_without_permission_on_the_exchange_is_reported_as_such() {
    let user = RestrictedUser::create("restricted-secret");
    let exchange = common::unique("logcollect-test-x");
    let (layer, guard) = shipper(uri_with(&user.name, "restricted-secret", "%2f"), &exchange);
    log(layer, 1);
    let error = assert_reported(&guard, &["ACCESS_REFUSED", &exchange, "set_permissions"]);
    assert!(error.contains(&user.name), "{error}");
    assert!(!error.contains("restricted-secret"), "{error}");
    let _ = guard.shutdown(Duration::from_millis(100));
}
