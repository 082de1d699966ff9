//! The shipper's counters in the application's Prometheus metrics (cargo feature `metrics`):
//! the application installs the exporter it likes, logcollect records `logcollect_*` metrics
//! through the `metrics` facade, a scrape of `/metrics` shows them beside the application's own.
//!
//! ```text
//! cargo run --example metrics --features metrics            # then: curl 127.0.0.1:9184/metrics
//! METRICS_ADDR=0.0.0.0:9184 LOGCOLLECT_BROKER_URI=amqp://... cargo run --example metrics --features metrics
//! ```

use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    // The recorder first: the shipper's metrics thread records into whichever is installed.
    let prometheus = PrometheusBuilder::new().install_recorder()?;
    let guard = logcollect::init()?;
    let addr = std::env::var("METRICS_ADDR").unwrap_or_else(|_| "127.0.0.1:9184".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("metrics on http://{}/metrics", listener.local_addr()?);
    tokio::spawn(serve(listener, prometheus));

    // The tiny application: some work, its own counter, logs.
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = ticks.tick() => {
                metrics::counter!("app_jobs_total").increment(1);
                tracing::info!(job = "resize", "job done");
            }
            _ = tokio::signal::ctrl_c() => break,
        }
    }
    let flushed = guard.shutdown_async(Duration::from_secs(5)).await;
    println!("undelivered at exit: {}", flushed.undelivered);
    Ok(())
}

/// A minimal HTTP/1.1 server: every request gets the Prometheus text of the recorder.
async fn serve(listener: tokio::net::TcpListener, prometheus: PrometheusHandle) {
    while let Ok((mut stream, _)) = listener.accept().await {
        let prometheus = prometheus.clone();
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request).await;
            let body = prometheus.render();
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes()).await;
            let _ = stream.write_all(body.as_bytes()).await;
        });
    }
}
