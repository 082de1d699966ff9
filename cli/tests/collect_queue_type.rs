//! `logcollect collect --queue-type`: the collector's queue declared as a quorum (or classic)
//! queue on the real broker, and a queue of another type refused, not silently used.

mod common;

use std::time::Duration;

use common::{broker_url, logcollect, unique, wait_output, Broker, Collect};
use lapin::options::QueueDeclareOptions;
use lapin::types::{AMQPValue, FieldTable, ShortString};

/// Declares `queue` durable with `x-queue-type` `kind`: the broker's refusal, if any.
fn declare_as(queue: &str, kind: &str) -> Result<(), String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let connection =
            lapin::Connection::connect(&broker_url(), lapin::ConnectionProperties::default())
                .await
                .expect("connect");
        let channel = connection.create_channel().await.expect("channel");
        let mut args = FieldTable::default();
        args.insert(
            ShortString::from("x-queue-type"),
            AMQPValue::LongString(kind.into()),
        );
        let declared = channel
            .queue_declare(
                ShortString::from(queue),
                QueueDeclareOptions {
                    durable: true,
                    ..QueueDeclareOptions::default()
                },
                args,
            )
            .await
            .map(|_| ())
            .map_err(|e| e.to_string());
        let _ = connection.close(200, ShortString::from("done")).await;
        declared
    })
}

#[test]
fn collect_declares_its_queue_as_a_quorum_queue_when_asked_and_refuses_another_type() {
    let exchange = unique("lc-cli-qtype");
    let queue = unique("lc-cli-qtype-q");
    let dir = tempfile_dir(&queue);
    let mut broker = Broker::connect();
    broker.forget_exchange_later(&exchange);

    let collect = Collect::start(&exchange, &queue, &dir, &["--queue-type", "quorum"]);
    // The broker holds it as a quorum queue: the same declaration is equivalent, a classic one
    // is not (AMQP tells a queue's type only this way).
    assert_eq!(declare_as(&queue, "quorum"), Ok(()));
    let classic = declare_as(&queue, "classic").expect_err("a quorum queue is not classic");
    assert!(
        classic.contains("PRECONDITION_FAILED") && classic.contains("x-queue-type"),
        "{classic}"
    );
    collect.signal("TERM");
    let (status, _) = collect.wait(Duration::from_secs(60));
    assert!(status.success());

    // Asked for a classic queue where the quorum queue exists: refused, exit 1, said why.
    let mut cmd = logcollect(&exchange);
    cmd.arg("collect")
        .arg("--dir")
        .arg(&dir)
        .args(["--queue", &queue, "--queue-type", "classic"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let out = wait_output(cmd.spawn().expect("start collect"), Duration::from_secs(60));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("cannot declare queue `{queue}`"))
            && stderr.contains("PRECONDITION_FAILED"),
        "{stderr}"
    );

    // An unknown type is a usage error.
    let mut cmd = logcollect(&exchange);
    cmd.arg("collect")
        .arg("--dir")
        .arg(&dir)
        .args(["--queue", &queue, "--queue-type", "stream"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    let out = wait_output(cmd.spawn().expect("start collect"), Duration::from_secs(60));
    assert_eq!(out.status.code(), Some(2));

    broker.delete_queue(&queue);
    let _ = std::fs::remove_dir_all(&dir);
}

fn tempfile_dir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(name);
    std::fs::create_dir_all(&dir).expect("dir");
    dir
}
