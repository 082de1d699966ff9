//! The collector's figures, the latest events, and the status page that shows them live
//! (Server-Sent Events), with `/api/recent`, `/api/stats` and `/healthz`.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::Stream;
use serde_json::{json, Map, Value};

use crate::json::Json;
use crate::render::View;

/// How many events the page and `/api/recent` show (the Twisted server's 300).
pub const RECENT: usize = 300;
const LAST_ERRORS: usize = 20;

const PAGE: &str = include_str!("page.html");
const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// One facility's figures, updated by the writer without a lock.
pub struct FacilityStats {
    pub name: String,
    file: Mutex<String>,
    events: AtomicU64,
    bytes: AtomicU64,
    rotations: AtomicU64,
}

impl FacilityStats {
    pub fn add(&self, bytes: u64) {
        self.events.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
    }
    pub fn rotated(&self) {
        self.rotations.fetch_add(1, Ordering::Relaxed);
    }
    pub fn set_file(&self, path: &Path) {
        *lock(&self.file) = path.display().to_string();
    }
}

/// A recent event as written: its document's JSON text, viewed only when the page asks
/// (so the writer pays a copy per event, not a parsed tree).
struct Recent {
    n: u64,
    facility: String,
    app_id: Option<Arc<str>>,
    doc: Box<str>,
}

/// One event for the recent ring: the document's JSON text, its `service:facility`, and the
/// message's `app_id`.
pub struct RecentEvent {
    pub doc: Box<str>,
    pub facility: String,
    pub app_id: Option<Arc<str>>,
}

pub struct Status {
    started: Instant,
    pub queue: String,
    pub dir: PathBuf,
    css: Option<PathBuf>,
    pub events: AtomicU64,
    pub messages: AtomicU64,
    pub raw_messages: AtomicU64,
    pub connected: AtomicBool,
    /// Messages ready in the queue (-1 until known).
    pub backlog: AtomicI64,
    pub open_files: AtomicU64,
    /// Events per second over the last second (f64 bits).
    rate: AtomicU64,
    errors: AtomicU64,
    last_errors: Mutex<VecDeque<String>>,
    facilities: Mutex<BTreeMap<String, Arc<FacilityStats>>>,
    recent: Mutex<(u64, VecDeque<Recent>)>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere leaves figures, not invariants: keep serving them.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Status {
    pub fn new(queue: String, dir: PathBuf, css: Option<PathBuf>) -> Status {
        Status {
            started: Instant::now(),
            queue,
            dir,
            css,
            events: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            raw_messages: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            backlog: AtomicI64::new(-1),
            open_files: AtomicU64::new(0),
            rate: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            last_errors: Mutex::new(VecDeque::new()),
            facilities: Mutex::new(BTreeMap::new()),
            recent: Mutex::new((0, VecDeque::with_capacity(RECENT + 1))),
        }
    }

    /// The figures of facility `name` (`service:facility`), created on first use.
    pub fn facility(&self, name: &str) -> Arc<FacilityStats> {
        lock(&self.facilities)
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(FacilityStats {
                    name: name.to_string(),
                    file: Mutex::new(String::new()),
                    events: AtomicU64::new(0),
                    bytes: AtomicU64::new(0),
                    rotations: AtomicU64::new(0),
                })
            })
            .clone()
    }

    /// An error the collector survived: counted, kept among the last ones, and on stderr.
    pub fn error(&self, message: String) {
        eprintln!("logcollect collect: {message}");
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut last = lock(&self.last_errors);
        if last.len() >= LAST_ERRORS {
            last.pop_front();
        }
        last.push_back(message);
    }

    /// The events just written, in order: only the latest `RECENT` are kept.
    /// `skipped` events were written before these and are counted, not kept (a batch larger
    /// than the ring keeps its newest only).
    pub fn recent(&self, skipped: u64, events: impl IntoIterator<Item = RecentEvent>) {
        let mut recent = lock(&self.recent);
        recent.0 = recent.0.saturating_add(skipped);
        for RecentEvent {
            doc,
            facility,
            app_id,
        } in events
        {
            recent.0 += 1;
            let n = recent.0;
            if recent.1.len() >= RECENT {
                recent.1.pop_front();
            }
            recent.1.push_back(Recent {
                n,
                facility,
                app_id,
                doc,
            });
        }
    }

    /// Events newer than `after` (all kept when 0), newest first.
    fn recent_json(&self, after: u64, with_document: bool) -> (u64, Vec<Value>) {
        let recent = lock(&self.recent);
        let out = recent
            .1
            .iter()
            .rev()
            .take_while(|r| r.n > after)
            .map(|r| {
                // Written as a document, so it parses; `Null` would only show an empty view.
                let doc: Json = serde_json::from_str(&r.doc).unwrap_or(Json::Null);
                let view = View::of(&doc, r.app_id.as_deref());
                let fields: Map<String, Value> = view
                    .fields
                    .iter()
                    .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                    .collect();
                let mut v = json!({
                    "n": r.n,
                    "time": view.time,
                    "level": view.level.map_or(view.level_text.as_str(), |l| l.as_str()),
                    "service": view.service,
                    "host": view.host,
                    "pid": view.pid,
                    "logger": view.logger,
                    "message": view.message,
                    "fields": fields,
                    "error": view.error,
                    "facility": r.facility,
                });
                if with_document {
                    if let Value::Object(m) = &mut v {
                        m.insert(
                            "document".into(),
                            serde_json::to_value(&doc).unwrap_or(Value::Null),
                        );
                    }
                }
                v
            })
            .collect();
        (recent.0, out)
    }

    pub fn stats_json(&self) -> Value {
        let facilities: Vec<Value> = lock(&self.facilities)
            .values()
            .map(|f| {
                json!({
                    "name": f.name,
                    "file": *lock(&f.file),
                    "events": f.events.load(Ordering::Relaxed),
                    "bytes": f.bytes.load(Ordering::Relaxed),
                    "rotations": f.rotations.load(Ordering::Relaxed),
                })
            })
            .collect();
        let backlog = self.backlog.load(Ordering::Relaxed);
        json!({
            "uptime_s": self.started.elapsed().as_secs(),
            "connected": self.connected.load(Ordering::Relaxed),
            "queue": self.queue,
            "backlog": (backlog >= 0).then_some(backlog),
            "dir": self.dir.display().to_string(),
            "events": self.events.load(Ordering::Relaxed),
            "events_per_s": f64::from_bits(self.rate.load(Ordering::Relaxed)),
            "messages": self.messages.load(Ordering::Relaxed),
            "raw_messages": self.raw_messages.load(Ordering::Relaxed),
            "bytes": facilities.iter().map(|f| f["bytes"].as_u64().unwrap_or(0)).sum::<u64>(),
            "open_files": self.open_files.load(Ordering::Relaxed),
            "facilities": facilities,
            "errors": self.errors.load(Ordering::Relaxed),
            "last_errors": lock(&self.last_errors).iter().collect::<Vec<_>>(),
        })
    }

    /// Samples the event counter every second for `events_per_s`.
    pub async fn measure_rate(self: Arc<Status>) {
        let mut last = self.events.load(Ordering::Relaxed);
        let mut at = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tick.tick().await;
            let now = self.events.load(Ordering::Relaxed);
            let secs = at.elapsed().as_secs_f64().max(0.001);
            let rate = now.saturating_sub(last) as f64 / secs;
            self.rate.store(rate.to_bits(), Ordering::Relaxed);
            last = now;
            at = Instant::now();
        }
    }
}

/// Serves the page on `addr` until the process ends.
pub async fn serve(status: Arc<Status>, listener: tokio::net::TcpListener) {
    let app = Router::new()
        .route("/", get(page))
        .route("/style.css", get(style))
        .route("/app.js", get(script))
        .route("/api/recent", get(api_recent))
        .route("/api/stats", get(api_stats))
        .route("/api/events", get(events))
        .route("/healthz", get(healthz))
        .with_state(status.clone());
    if let Err(e) = axum::serve(listener, app).await {
        status.error(format!("the status page stopped: {e}"));
    }
}

pub async fn bind(addr: SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(addr).await
}

async fn page() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/html; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        PAGE,
    )
}

/// The built-in stylesheet, or the user's (`--css FILE`, read at each request so edits show
/// on reload).
async fn style(State(status): State<Arc<Status>>) -> Response {
    let css = match &status.css {
        Some(path) => match std::fs::read_to_string(path) {
            Ok(css) => css,
            Err(e) => {
                status.error(format!(
                    "cannot read the stylesheet {}: {e}",
                    path.display()
                ));
                STYLE.to_string()
            }
        },
        None => STYLE.to_string(),
    };
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        css,
    )
        .into_response()
}

async fn script() -> impl IntoResponse {
    (
        [
            (header::CONTENT_TYPE, "text/javascript; charset=utf-8"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        SCRIPT,
    )
}

async fn api_recent(State(status): State<Arc<Status>>) -> impl IntoResponse {
    axum::Json(Value::Array(status.recent_json(0, true).1))
}

async fn api_stats(State(status): State<Arc<Status>>) -> impl IntoResponse {
    axum::Json(status.stats_json())
}

async fn healthz(State(status): State<Arc<Status>>) -> Response {
    if status.connected.load(Ordering::Relaxed) {
        (StatusCode::OK, "ok\n").into_response()
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            "not consuming: no connection to the broker\n",
        )
            .into_response()
    }
}

/// The live feed: every 500 ms, the events written since the last (`events`, newest first,
/// at most `RECENT`), and the figures (`stats`). Polling the ring, not a channel per event,
/// keeps the writer's cost the same with or without watchers.
async fn events(
    State(status): State<Arc<Status>>,
) -> Sse<impl Stream<Item = Result<Event, Infallible>>> {
    // The interval's first tick is immediate: the page fills at once.
    let state = (
        status,
        0u64,
        tokio::time::interval(Duration::from_millis(500)),
    );
    let stream = futures_util::stream::unfold(state, |(status, seen, mut tick)| async move {
        tick.tick().await;
        let (last, events) = status.recent_json(seen, false);
        let body = json!({ "events": events, "stats": status.stats_json() });
        let event = Event::default().event("update").data(body.to_string());
        Some((Ok(event), (status, last, tick)))
    });
    Sse::new(stream).keep_alive(KeepAlive::default())
}
