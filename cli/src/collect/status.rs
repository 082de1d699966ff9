//! The collector's figures, the latest events, and the status page that shows them live
//! (Server-Sent Events), with `/api/recent`, `/api/stats`, `/metrics` (Prometheus text,
//! written by `super::metrics`) and `/healthz`.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
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
/// A recent document longer than this is kept as a preview (its main fields, cut).
const PREVIEW: usize = 4096;
const LAST_ERRORS: usize = 20;
/// Seconds of per-second samples kept for the page's chart: a fixed ring, whatever the uptime.
pub const RATE_WINDOW_SECONDS: usize = 300;

const PAGE: &str = include_str!("page.html");
const STYLE: &str = include_str!("page.css");
const SCRIPT: &str = include_str!("page.js");

/// One facility's figures, updated by the writer without a lock.
pub struct FacilityStats {
    pub name: String,
    /// Order of first use: the first `metrics::MAX_FACILITY_LABELS` get a label of their own.
    pub index: usize,
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

/// Who the status page answers.
#[derive(Debug, Clone, Default)]
pub struct Access {
    /// Host names (lower-case, without the port) accepted besides the loopback ones.
    pub allow_hosts: Vec<String>,
    /// Bearer token `/api/*` requires (`Authorization: Bearer T`, or `?token=T`).
    pub token: Option<String>,
}

impl Access {
    /// `Host` is a loopback name or one the operator listed, with or without a port. Any
    /// other name may be a DNS-rebinding page the operator visited: refused.
    pub fn host_allowed(&self, host: &str) -> bool {
        let host = host.trim().to_ascii_lowercase();
        let name = if let Some(rest) = host.strip_prefix('[') {
            match rest.split_once(']') {
                Some((inside, port)) if port.is_empty() || is_port(port) => inside.to_string(),
                _ => return false,
            }
        } else {
            match host.rsplit_once(':') {
                Some((name, port)) if is_port(&format!(":{port}")) => name.to_string(),
                Some(_) => return false,
                None => host,
            }
        };
        let name = name.strip_suffix('.').unwrap_or(&name);
        matches!(name, "localhost" | "127.0.0.1" | "::1")
            || self.allow_hosts.iter().any(|h| h == name)
    }

    fn token_ok(&self, headers: &HeaderMap, query: Option<&str>) -> bool {
        let Some(token) = &self.token else {
            return true;
        };
        let from_header = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        let from_query = query.and_then(|q| {
            q.split('&')
                .find_map(|kv| kv.strip_prefix("token="))
                .map(percent_decode)
        });
        [from_header.map(str::to_string), from_query]
            .iter()
            .flatten()
            .any(|given| same(given.as_bytes(), token.as_bytes()))
    }
}

fn is_port(s: &str) -> bool {
    s.strip_prefix(':')
        .is_some_and(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Compares in a time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        match (b[i], b.get(i + 1).copied(), b.get(i + 2).copied()) {
            (b'%', Some(h), Some(l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b'+', _, _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub struct Status {
    started: Instant,
    /// The recent ring is kept only for the status page (`--http`).
    keep_recent: bool,
    access: Access,
    /// Live connections to the status page.
    pub connections: Arc<AtomicUsize>,
    pub rejected_messages: AtomicU64,
    pub cut_documents: AtomicU64,
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
    /// Rotated files compressed.
    pub compressions: AtomicU64,
    /// Failed attempts to write a message.
    pub write_errors: AtomicU64,
    /// When writing began to fail (ms since `started`, plus 1), 0 while the last write succeeded.
    write_failing_since: AtomicU64,
    /// `/healthz` answers 503 once writing has been failing this long.
    pub unhealthy_after: Duration,
    /// Events per second over the last second (f64 bits).
    rate: AtomicU64,
    /// Events written and errors in each of the last seconds, oldest first (at most
    /// `RATE_WINDOW_SECONDS`).
    rates: Mutex<VecDeque<[u64; 2]>>,
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
    pub fn new(
        queue: String,
        dir: PathBuf,
        css: Option<PathBuf>,
        keep_recent: bool,
        access: Access,
    ) -> Status {
        Status {
            started: Instant::now(),
            keep_recent,
            access,
            connections: Arc::new(AtomicUsize::new(0)),
            rejected_messages: AtomicU64::new(0),
            cut_documents: AtomicU64::new(0),
            queue,
            dir,
            css,
            events: AtomicU64::new(0),
            messages: AtomicU64::new(0),
            raw_messages: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            backlog: AtomicI64::new(-1),
            open_files: AtomicU64::new(0),
            compressions: AtomicU64::new(0),
            write_errors: AtomicU64::new(0),
            write_failing_since: AtomicU64::new(0),
            unhealthy_after: Duration::from_secs(60),
            rate: AtomicU64::new(0),
            rates: Mutex::new(VecDeque::with_capacity(RATE_WINDOW_SECONDS)),
            errors: AtomicU64::new(0),
            last_errors: Mutex::new(VecDeque::new()),
            facilities: Mutex::new(BTreeMap::new()),
            recent: Mutex::new((0, VecDeque::new())),
        }
    }

    /// The figures of facility `name` (`service:facility`), created on first use.
    pub fn facility(&self, name: &str) -> Arc<FacilityStats> {
        let mut facilities = lock(&self.facilities);
        let index = facilities.len();
        facilities
            .entry(name.to_string())
            .or_insert_with(|| {
                Arc::new(FacilityStats {
                    name: name.to_string(),
                    index,
                    file: Mutex::new(String::new()),
                    events: AtomicU64::new(0),
                    bytes: AtomicU64::new(0),
                    rotations: AtomicU64::new(0),
                })
            })
            .clone()
    }

    /// Every facility's figures now: (index, name, events, bytes, rotations).
    pub fn facility_figures(&self) -> Vec<(usize, String, u64, u64, u64)> {
        lock(&self.facilities)
            .values()
            .map(|f| {
                (
                    f.index,
                    f.name.clone(),
                    f.events.load(Ordering::Relaxed),
                    f.bytes.load(Ordering::Relaxed),
                    f.rotations.load(Ordering::Relaxed),
                )
            })
            .collect()
    }

    /// Errors survived, of every kind.
    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub fn uptime(&self) -> Duration {
        self.started.elapsed()
    }

    /// A message was written whole: writing works.
    pub fn write_succeeded(&self) {
        self.write_failing_since.store(0, Ordering::Relaxed);
    }

    /// An attempt to write a message failed: writing has been failing since the first such
    /// failure after the last success.
    pub fn write_failed(&self) {
        self.write_errors.fetch_add(1, Ordering::Relaxed);
        let now = u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX);
        let _ = self.write_failing_since.compare_exchange(
            0,
            now.saturating_add(1),
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// How long writing has been failing (no message written since), `None` while it works.
    pub fn write_failing_for(&self) -> Option<Duration> {
        let since = self.write_failing_since.load(Ordering::Relaxed);
        (since > 0).then(|| {
            self.started
                .elapsed()
                .saturating_sub(Duration::from_millis(since - 1))
        })
    }

    /// Healthy: consuming, and writing has not been failing for longer than
    /// `unhealthy_after`; else why not.
    pub fn health(&self) -> Result<(), String> {
        if !self.connected.load(Ordering::Relaxed) {
            return Err("not consuming: no connection to the broker".into());
        }
        match self.write_failing_for() {
            Some(failing) if failing > self.unhealthy_after => Err(format!(
                "not writing: every write has failed for {}s (--unhealthy-after {}s); see the \
                 errors on /api/stats or stderr",
                failing.as_secs(),
                self.unhealthy_after.as_secs()
            )),
            _ => Ok(()),
        }
    }

    /// An error the collector survived: counted, kept among the last ones, and on stderr.
    /// Counted before it is printed: whoever reads the line finds it counted.
    pub fn error(&self, message: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        eprintln!("logcollect collect: {message}");
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
        if !self.keep_recent {
            return;
        }
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
            let doc = if doc.len() > PREVIEW {
                preview(&doc, app_id.as_deref())
            } else {
                doc
            };
            recent.1.push_back(Recent {
                n,
                facility,
                app_id,
                doc,
            });
        }
    }

    /// Whether the writer should hand events to `recent` at all.
    pub fn keeps_recent(&self) -> bool {
        self.keep_recent
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
            "rejected_messages": self.rejected_messages.load(Ordering::Relaxed),
            "cut_documents": self.cut_documents.load(Ordering::Relaxed),
            "http_connections": self.connections.load(Ordering::Relaxed),
            "bytes": facilities.iter().map(|f| f["bytes"].as_u64().unwrap_or(0)).sum::<u64>(),
            "open_files": self.open_files.load(Ordering::Relaxed),
            "facilities": facilities,
            "errors": self.errors.load(Ordering::Relaxed),
            "last_errors": lock(&self.last_errors).iter().collect::<Vec<_>>(),
            "rates": self.rates_json(),
        })
    }

    /// The chart's data: events written and errors in each second of the window, oldest
    /// first (fewer than the window's seconds in the first minutes).
    fn rates_json(&self) -> Value {
        let rates = lock(&self.rates);
        json!({
            "step_s": 1,
            "window_s": RATE_WINDOW_SECONDS,
            "events": rates.iter().map(|s| s[0]).collect::<Vec<_>>(),
            "errors": rates.iter().map(|s| s[1]).collect::<Vec<_>>(),
        })
    }

    /// One second's sample: the oldest leaves once the window is full.
    fn add_sample(&self, events: u64, errors: u64) {
        let mut rates = lock(&self.rates);
        if rates.len() >= RATE_WINDOW_SECONDS {
            rates.pop_front();
        }
        rates.push_back([events, errors]);
    }

    /// Samples the event and error counters every second: `events_per_s`, and the chart's
    /// window. Counted from 0, so while the collector is younger than the window the samples
    /// add up to the counters as of the last sample.
    pub async fn measure_rate(self: Arc<Status>) {
        let mut last = [0u64; 2];
        let mut at = Instant::now();
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        // A late tick makes one longer sample, not a burst of empty ones.
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is at once
        loop {
            tick.tick().await;
            let now = [self.events.load(Ordering::Relaxed), self.errors()];
            let secs = at.elapsed().as_secs_f64().max(0.001);
            let events = now[0].saturating_sub(last[0]);
            self.rate
                .store((events as f64 / secs).to_bits(), Ordering::Relaxed);
            self.add_sample(events, now[1].saturating_sub(last[1]));
            last = now;
            at = Instant::now();
        }
    }
}

/// A long recent document as a short one: its main fields, the message and field values cut
/// to 256 characters, at most 20 fields, and how long the original was.
fn preview(doc: &str, app_id: Option<&str>) -> Box<str> {
    let json: Json = serde_json::from_str(doc).unwrap_or(Json::Null);
    let view = View::of(&json, app_id);
    let cut = |s: &str| -> String {
        if s.chars().count() <= 256 {
            s.to_string()
        } else {
            format!("{}…", s.chars().take(256).collect::<String>())
        }
    };
    let fields: Map<String, Value> = view
        .fields
        .iter()
        .take(20)
        .map(|(k, v)| (cut(k), Value::String(cut(v))))
        .collect();
    json!({
        "@timestamp": cut(&view.time),
        "log": {"level": cut(&view.level_text), "logger": cut(&view.logger)},
        "service": {"name": cut(&view.service)},
        "host": {"hostname": cut(&view.host)},
        "process": {"pid": cut(&view.pid)},
        "message": cut(&view.message),
        "fields": fields,
        "error": view.error.as_deref().map(|e| json!({"message": cut(e)})),
        "logcollect": {"preview_of_bytes": doc.len()},
    })
    .to_string()
    .into_boxed_str()
}

/// Refuses a foreign `Host` (403) on every path, and a missing or wrong token (401) on
/// `/api/*`, where the events are, and `/metrics` (facility names). The page, its script and
/// stylesheet and `/healthz` hold none.
async fn guard(State(status): State<Arc<Status>>, request: Request, next: Next) -> Response {
    let host = request
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok());
    if !host.is_some_and(|h| status.access.host_allowed(h)) {
        return (
            StatusCode::FORBIDDEN,
            "this status page answers to loopback names and the names given with \
             --http-allow-host only\n",
        )
            .into_response();
    }
    let path = request.uri().path();
    if (path.starts_with("/api/") || path == "/metrics")
        && !status
            .access
            .token_ok(request.headers(), request.uri().query())
    {
        return (
            StatusCode::UNAUTHORIZED,
            [(header::WWW_AUTHENTICATE, "Bearer")],
            "a token is required: `Authorization: Bearer TOKEN`, or ?token=TOKEN\n",
        )
            .into_response();
    }
    next.run(request).await
}

/// Serves the page until the process ends.
pub async fn serve(status: Arc<Status>, listener: Capped) {
    let app = Router::new()
        .route("/", get(page))
        .route("/style.css", get(style))
        .route("/app.js", get(script))
        .route("/api/recent", get(api_recent))
        .route("/api/stats", get(api_stats))
        .route("/api/events", get(events))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .layer(axum::middleware::from_fn_with_state(status.clone(), guard))
        .with_state(status.clone());
    if let Err(e) = axum::serve(listener, app).await {
        status.error(format!("the status page stopped: {e}"));
    }
}

pub async fn bind(addr: SocketAddr, max: usize, live: Arc<AtomicUsize>) -> std::io::Result<Capped> {
    Ok(Capped {
        inner: tokio::net::TcpListener::bind(addr).await?,
        live,
        max,
        refusing: Arc::new(AtomicUsize::new(0)),
    })
}

/// Connections being told 503 at most at once (each for at most a second); past it, extra
/// connections are closed at once.
pub const REFUSING: usize = 8;

/// The listener with a cap on live connections, so the status page can never take the
/// descriptors the writer needs: one past the cap is answered 503 and closed.
pub struct Capped {
    inner: tokio::net::TcpListener,
    live: Arc<AtomicUsize>,
    max: usize,
    refusing: Arc<AtomicUsize>,
}

/// A connection, counted while it lives.
pub struct Counted {
    stream: tokio::net::TcpStream,
    live: Arc<AtomicUsize>,
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }
}

impl tokio::io::AsyncRead for Counted {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl tokio::io::AsyncWrite for Counted {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.stream).poll_write(cx, buf)
    }
    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_flush(cx)
    }
    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

impl axum::serve::Listener for Capped {
    type Io = Counted;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Counted, SocketAddr) {
        loop {
            let (stream, addr) = match self.inner.accept().await {
                Ok(x) => x,
                Err(_) => {
                    // Out of descriptors, or a connection reset before it was taken.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if self.live.load(Ordering::Relaxed) >= self.max {
                if self.refusing.load(Ordering::Relaxed) < REFUSING {
                    self.refusing.fetch_add(1, Ordering::Relaxed);
                    tokio::spawn(refuse(stream, self.refusing.clone()));
                }
                continue;
            }
            self.live.fetch_add(1, Ordering::Relaxed);
            return (
                Counted {
                    stream,
                    live: self.live.clone(),
                },
                addr,
            );
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.inner.local_addr()
    }
}

/// 503 to a connection past the cap: its request read first (so closing does not reset the
/// answer away), within a second.
async fn refuse(mut stream: tokio::net::TcpStream, refusing: Arc<AtomicUsize>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let mut buf = [0u8; 4096];
        let mut seen = Vec::new();
        while !seen.windows(4).any(|w| w == b"\r\n\r\n") && seen.len() < 16 * 1024 {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => seen.extend_from_slice(&buf[..n]),
            }
        }
        let body = "too many connections to the status page (--http-max-connections)\n";
        let answer = format!(
            "HTTP/1.1 503 Service Unavailable\r\ncontent-type: text/plain; charset=utf-8\r\n\
             content-length: {}\r\nretry-after: 5\r\nconnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = stream.write_all(answer.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
    refusing.fetch_sub(1, Ordering::Relaxed);
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

/// 200 while the collector consumes and writes; 503 without a broker connection, or when
/// writing has been failing for longer than `--unhealthy-after`.
async fn healthz(State(status): State<Arc<Status>>) -> Response {
    match status.health() {
        Ok(()) => (StatusCode::OK, "ok\n").into_response(),
        Err(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n")).into_response(),
    }
}

async fn metrics(State(status): State<Arc<Status>>) -> Response {
    (
        [(header::CONTENT_TYPE, super::metrics::CONTENT_TYPE)],
        super::metrics::render(&status),
    )
        .into_response()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_and_listed_hosts_are_let_in() {
        let access = Access {
            allow_hosts: vec!["logs.internal".into()],
            token: None,
        };
        for ok in [
            "localhost",
            "localhost:9021",
            "127.0.0.1",
            "127.0.0.1:9021",
            "[::1]",
            "[::1]:9021",
            "LOCALHOST.",
            "logs.internal:8080",
        ] {
            assert!(access.host_allowed(ok), "{ok}");
        }
        for refused in [
            "rebind.attacker.example",
            "rebind.attacker.example:9021",
            "localhost.attacker.example",
            "127.0.0.1.nip.io",
            "[::1]x",
            "localhost:port",
            "",
            "10.0.0.1",
        ] {
            assert!(!access.host_allowed(refused), "{refused}");
        }
    }

    #[test]
    fn the_rate_window_keeps_the_latest_seconds_only() {
        let status = Status::new(
            "q".into(),
            PathBuf::from("d"),
            None,
            false,
            Access::default(),
        );
        for second in 0..(RATE_WINDOW_SECONDS as u64 * 3 + 7) {
            status.add_sample(second, second % 2);
        }
        let rates = status.stats_json()["rates"].clone();
        let events = rates["events"].as_array().expect("events");
        assert_eq!(events.len(), RATE_WINDOW_SECONDS);
        assert_eq!(
            rates["errors"].as_array().expect("errors").len(),
            events.len()
        );
        // Oldest first, ending with the latest second.
        let latest = RATE_WINDOW_SECONDS as u64 * 3 + 6;
        assert_eq!(events.last(), Some(&json!(latest)));
        assert_eq!(events[0], json!(latest + 1 - RATE_WINDOW_SECONDS as u64));
    }

    #[test]
    fn the_token_is_taken_from_the_header_or_the_query() {
        let access = Access {
            allow_hosts: vec![],
            token: Some("s3cr et".into()),
        };
        let mut h = HeaderMap::new();
        assert!(!access.token_ok(&h, None));
        assert!(access.token_ok(&h, Some("a=1&token=s3cr%20et")));
        assert!(!access.token_ok(&h, Some("token=s3cr")));
        h.insert(header::AUTHORIZATION, "Bearer s3cr et".parse().unwrap());
        assert!(access.token_ok(&h, None));
        h.insert(header::AUTHORIZATION, "Bearer wrong".parse().unwrap());
        assert!(!access.token_ok(&h, None));
    }
}
