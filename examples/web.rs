//! A web service with logcollect: an axum app booted with one call, every request a span with
//! one access event, its jobs queued with the request's trace context.
//!
//! ```text
//! cargo run --features http --example web -- --listen 127.0.0.1:3000 [--jobs-queue NAME]
//! curl http://127.0.0.1:3000/hello                     # 200, an INFO event in the handler
//! curl http://127.0.0.1:3000/fail                      # 500, an ERROR event with a source chain
//! curl -X POST http://127.0.0.1:3000/jobs              # 202, a job queued for the worker example
//! curl http://127.0.0.1:3000/panic                     # 500, the handler panicked
//! ```
//!
//! Configuration as for `init` (`LOGCOLLECT_*`); the jobs go to the durable queue
//! `logcollect-demo-jobs` (or `--jobs-queue`) on the broker of `broker_uri`, through the default
//! exchange, with the trace context in their AMQP headers (`cargo run --example worker` consumes
//! them). Prints `listening on http://ADDR` once it accepts connections; stops on SIGINT/SIGTERM,
//! delivering what is queued.
//!
//! Any transport: the logs go where `LOGCOLLECT_TRANSPORT` says. Into MongoDB, the access events
//! of the `http` layer and the handlers' error events land in one collection, each with its ECS
//! `http.*` and `url.*` fields (`tests/mongodb_http.rs` checks them):
//!
//! ```text
//! LOGCOLLECT_TRANSPORT=mongodb LOGCOLLECT_MONGODB__URI=mongodb://127.0.0.1:27017 \
//!   LOGCOLLECT_MONGODB__COLLECTION=web cargo run --features http,mongodb --example web
//! mongosh logcollect --eval 'db.web.find({"log.level": "ERROR"}).sort({"@timestamp": -1})'
//! ```

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Extension, State};
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::Router;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, QueueDeclareOptions};
use lapin::types::{FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use logcollect::integrations::amqp;
use logcollect::integrations::http::{HttpLayer, RequestId};
use tokio::sync::Mutex;
use tracing::Instrument;

/// The durable queue jobs are published to (the worker example consumes it).
const JOBS_QUEUE: &str = "logcollect-demo-jobs";

#[derive(Debug)]
struct InventoryDown;
impl std::fmt::Display for InventoryDown {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("inventory service refused the connection")
    }
}
impl std::error::Error for InventoryDown {}

#[derive(Debug)]
struct CheckoutError(InventoryDown);
impl std::fmt::Display for CheckoutError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("checkout failed")
    }
}
impl std::error::Error for CheckoutError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

pub struct Jobs {
    broker_uri: String,
    queue: String,
    channel: Mutex<Option<(Connection, Channel)>>,
}

impl Jobs {
    /// Jobs published to `queue` on the broker of `broker_uri`, connected at the first job.
    pub fn new(broker_uri: String, queue: String) -> Jobs {
        Jobs {
            broker_uri,
            queue,
            channel: Mutex::new(None),
        }
    }

    /// A channel in confirm mode with the queue declared, (re)connecting when needed.
    async fn channel(&self) -> Result<Channel, lapin::Error> {
        let mut slot = self.channel.lock().await;
        if let Some((connection, channel)) = slot.as_ref() {
            if connection.status().connected() && channel.status().connected() {
                return Ok(channel.clone());
            }
        }
        let connection =
            Connection::connect(&self.broker_uri, ConnectionProperties::default()).await?;
        let channel = connection.create_channel().await?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        channel
            .queue_declare(
                ShortString::from(self.queue.as_str()),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await?;
        *slot = Some((connection, channel.clone()));
        Ok(channel)
    }

    /// Publishes one job, persistent, with the current trace context; waits for the confirm.
    async fn publish(&self, job_id: &str, request_id: &str) -> Result<(), String> {
        let channel = self.channel().await.map_err(|e| e.to_string())?;
        let body = serde_json::json!({"job_id": job_id, "kind": "demo", "request_id": request_id});
        let properties = amqp::with_trace_context(
            BasicProperties::default()
                .with_delivery_mode(2)
                .with_content_type(ShortString::from("application/json"))
                .with_message_id(ShortString::from(job_id)),
        );
        let confirm = channel
            .basic_publish(
                ShortString::from(""),
                ShortString::from(self.queue.as_str()),
                BasicPublishOptions::default(),
                body.to_string().as_bytes(),
                properties,
            )
            .await
            .map_err(|e| e.to_string())?
            .await
            .map_err(|e| e.to_string())?;
        if confirm.is_nack() {
            return Err("the broker refused the job (nack)".into());
        }
        Ok(())
    }
}

async fn hello() -> &'static str {
    tracing::info!(greeting = "hello", "saying hello");
    // Work spawned with the request's span carries the same trace.id and http.request.id.
    let spawned = tokio::spawn(
        async { tracing::info!("hello from a task spawned with the request span") }
            .instrument(tracing::Span::current()),
    );
    let _ = spawned.await;
    "hello\n"
}

async fn fail() -> (StatusCode, &'static str) {
    let err = CheckoutError(InventoryDown);
    tracing::error!(
        error = &err as &dyn std::error::Error,
        order = 1042,
        "could not complete the checkout"
    );
    (StatusCode::INTERNAL_SERVER_ERROR, "checkout failed\n")
}

async fn panic() -> &'static str {
    panic!("the demo handler panicked on purpose");
}

async fn create_job(
    State(jobs): State<Arc<Jobs>>,
    Extension(request_id): Extension<RequestId>,
) -> (StatusCode, String) {
    let job_id = uuid::Uuid::new_v4().to_string();
    match jobs.publish(&job_id, &request_id.0).await {
        Ok(()) => {
            tracing::info!(
                job_id = job_id.as_str(),
                queue = jobs.queue.as_str(),
                "job queued"
            );
            (StatusCode::ACCEPTED, format!("{job_id}\n"))
        }
        Err(e) => {
            tracing::error!(
                job_id = job_id.as_str(),
                reason = e.as_str(),
                "cannot queue the job"
            );
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "cannot queue the job\n".into(),
            )
        }
    }
}

/// The app: its routes behind the `http` layer (one span and one access event per request).
pub fn app(jobs: Arc<Jobs>) -> Router {
    Router::new()
        .route("/hello", get(hello))
        .route("/fail", get(fail))
        .route("/panic", get(panic))
        .route("/jobs", post(create_job))
        .with_state(jobs)
        .layer(HttpLayer::new())
}

fn arg(args: &[String], name: &str) -> Option<String> {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(term) => term,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    let listen: SocketAddr = arg(&args, "--listen")
        .unwrap_or_else(|| "127.0.0.1:3000".into())
        .parse()?;
    let queue = arg(&args, "--jobs-queue").unwrap_or_else(|| JOBS_QUEUE.into());

    // The one call: configuration from LOGCOLLECT_*, service name and version from Cargo.
    // Service `logcollect-web` (unless LOGCOLLECT_SERVICE_NAME or the `application` identity entry
    // names it), version from Cargo.
    let builder = logcollect::builder_from_env()?.cargo_package(logcollect::CargoPackage {
        name: "logcollect-web",
        ..logcollect::cargo_package!()
    });
    let broker_uri = builder.config().broker_uri.clone();
    let shutdown_timeout = builder.config().shutdown_timeout;
    let guard = builder.init()?;

    let app = app(Arc::new(Jobs::new(broker_uri, queue)));

    let listener = tokio::net::TcpListener::bind(listen).await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown_signal())
    .await?;
    // Delivers what is queued without blocking a runtime worker (dropping the guard would wait
    // on this one); what is left undelivered is reported on stderr.
    let _ = guard.shutdown_async(shutdown_timeout).await;
    Ok(())
}
