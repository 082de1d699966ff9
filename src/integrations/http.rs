//! Web requests (cargo feature `http`): a tower [`Layer`] that gives each request a span and,
//! when the response is ready, one access event.
//!
//! ```no_run
//! use axum::{routing::get, Router};
//! use logcollect::integrations::http::HttpLayer;
//!
//! let app: Router = Router::new()
//!     .route("/hello", get(|| async { "hello" }))
//!     .layer(HttpLayer::new()); // after the routes: axum's matched route is then known
//! // axum::serve(listener, app.into_make_service_with_connect_info::<std::net::SocketAddr>())
//! ```
//!
//! The request span (`http.request`, target `logcollect::http`, INFO) carries
//! `http.request.method`, `url.path`, `http.route` (axum's matched route template),
//! `http.version`, `http.request.id`, `client.ip` and `user_agent.original`, so every event
//! logged inside the request — in the handler, or in a task spawned with
//! `.instrument(Span::current())` — carries them, and the request's `trace.id`. The access
//! event adds `http.response.status_code`, `event.duration` (nanoseconds) and the body sizes
//! when known; it is INFO, or ERROR for a 5xx, a service error or a handler that panicked (the
//! panic becomes a 500 response).
//!
//! `x-request-id`: an incoming one (1–128 visible ASCII characters) is kept, else a UUID v4 is
//! made; it is set on the request (and as a [`RequestId`] extension) and returned in the
//! response. `traceparent`: a valid incoming one is continued (its trace id kept), a missing or
//! malformed one starts a new trace; the request's own context is set on the request (for
//! calls made downstream) and returned in the response. `client.ip` is the socket's address
//! (axum's `ConnectInfo<SocketAddr>`, i.e. `into_make_service_with_connect_info`), or the first
//! `X-Forwarded-For` address when [`HttpLayer::trust_forwarded_for`] is on.

use std::fmt;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use http::header::{CONTENT_LENGTH, USER_AGENT};
use http::{HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode, Version};
use http_body::Body;
use tower_layer::Layer;
use tower_service::Service;
use tracing::field::Empty;
use tracing::Level;

use crate::trace::{self, SpanContext, TraceContext, TRACEPARENT, TRACESTATE};

/// The request id header.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The request's id, as a request extension for handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestId(pub Arc<str>);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The trace context of HTTP headers; `None` (start a new trace) when `traceparent` is
/// missing, repeated or malformed. Several `tracestate` headers are one list.
pub fn extract(headers: &HeaderMap) -> Option<TraceContext> {
    let mut parents = headers.get_all(TRACEPARENT).iter();
    let parent = parents.next()?.to_str().ok()?;
    if parents.next().is_some() {
        return None;
    }
    let states: Vec<&str> = headers
        .get_all(TRACESTATE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect();
    let state = (!states.is_empty()).then(|| states.join(","));
    TraceContext::parse(parent, state.as_deref())
}

/// Writes `traceparent` (and `tracestate`) for `context` into HTTP headers, replacing any.
pub fn inject_context(context: &SpanContext, headers: &mut HeaderMap) {
    context.inject(|name, value| {
        if let Ok(value) = HeaderValue::from_str(&value) {
            headers.insert(name, value);
        }
    });
}

/// Writes the current span's trace context into HTTP headers (for an outgoing call); `false`
/// when there is no current span known to logcollect.
pub fn inject(headers: &mut HeaderMap) -> bool {
    match trace::current() {
        Some(context) => {
            inject_context(&context, headers);
            true
        }
        None => false,
    }
}

/// The tower layer; see the [module docs](self).
#[derive(Debug, Clone, Default)]
pub struct HttpLayer {
    trust_forwarded_for: bool,
}

impl HttpLayer {
    /// A layer with the defaults (no trusted proxies).
    pub fn new() -> Self {
        HttpLayer::default()
    }

    /// Take `client.ip` from the first `X-Forwarded-For` address (when it is one) instead of
    /// the socket. Only behind a proxy you trust to set it: clients can send anything.
    pub fn trust_forwarded_for(mut self, on: bool) -> Self {
        self.trust_forwarded_for = on;
        self
    }
}

impl<S> Layer<S> for HttpLayer {
    type Service = HttpService<S>;

    fn layer(&self, inner: S) -> HttpService<S> {
        HttpService {
            inner,
            trust_forwarded_for: self.trust_forwarded_for,
        }
    }
}

/// The service [`HttpLayer`] wraps around yours.
#[derive(Debug, Clone)]
pub struct HttpService<S> {
    inner: S,
    trust_forwarded_for: bool,
}

/// An incoming request id worth keeping: 1–128 visible ASCII characters.
fn incoming_request_id(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(X_REQUEST_ID)?.to_str().ok()?.trim();
    let ok = !value.is_empty() && value.len() <= 128 && value.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| value.to_string())
}

fn version(v: Version) -> &'static str {
    match v {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_11 => "1.1",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "unknown",
    }
}

/// The first address of `X-Forwarded-For` (`ip`, `ip:port` or `[ipv6]:port`).
fn forwarded_for(headers: &HeaderMap) -> Option<IpAddr> {
    let first = headers
        .get("x-forwarded-for")?
        .to_str()
        .ok()?
        .split(',')
        .next()?
        .trim();
    first
        .parse::<IpAddr>()
        .ok()
        .or_else(|| first.parse::<SocketAddr>().ok().map(|a| a.ip()))
}

fn client_ip<B>(req: &Request<B>, trust_forwarded_for: bool) -> Option<IpAddr> {
    if trust_forwarded_for {
        if let Some(ip) = forwarded_for(req.headers()) {
            return Some(ip);
        }
    }
    req.extensions()
        .get::<axum::extract::ConnectInfo<SocketAddr>>()
        .map(|info| info.0.ip())
}

fn content_length(headers: &HeaderMap) -> Option<u64> {
    headers
        .get(CONTENT_LENGTH)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()
}

impl<S, ReqBody, ResBody> Service<Request<ReqBody>> for HttpService<S>
where
    S: Service<Request<ReqBody>, Response = Response<ResBody>>,
    S::Error: fmt::Display,
    ReqBody: Body,
    ResBody: Body + Default,
{
    type Response = Response<ResBody>;
    type Error = S::Error;
    type Future = ResponseFuture<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request<ReqBody>) -> Self::Future {
        let start = Instant::now();
        let request_id =
            incoming_request_id(req.headers()).unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
        let remote = extract(req.headers());
        let method = req.method().as_str().to_string();
        let path = req.uri().path().to_string();
        let span = tracing::info_span!(
            target: "logcollect::http",
            "http.request",
            http.request.method = method.as_str(),
            url.path = path.as_str(),
            http.route = Empty,
            http.version = version(req.version()),
            http.request.id = request_id.as_str(),
            client.ip = Empty,
            user_agent.original = Empty,
        );
        if let Some(route) = req.extensions().get::<axum::extract::MatchedPath>() {
            span.record("http.route", route.as_str());
        }
        if let Some(ip) = client_ip(&req, self.trust_forwarded_for) {
            span.record("client.ip", ip.to_string());
        }
        if let Some(agent) = req.headers().get(USER_AGENT).and_then(|v| v.to_str().ok()) {
            span.record("user_agent.original", agent);
        }
        if let Some(remote) = &remote {
            trace::set_parent(&span, remote);
        }
        // The span's own context; when the span is disabled (filtered out), one for the
        // response header only, so the caller still learns the trace id.
        let context = trace::span_context(&span).unwrap_or_else(|| match &remote {
            Some(remote) => SpanContext::continuing(remote),
            None => SpanContext::new_root(),
        });
        let headers = req.headers_mut();
        if let Ok(value) = HeaderValue::from_str(&request_id) {
            headers.insert(X_REQUEST_ID, value);
        }
        inject_context(&context, headers);
        let request_bytes =
            content_length(req.headers()).or_else(|| req.body().size_hint().exact());
        req.extensions_mut()
            .insert(RequestId(Arc::from(request_id.as_str())));
        let inner = {
            let _entered = span.enter();
            self.inner.call(req)
        };
        ResponseFuture {
            inner,
            state: Some(State {
                span,
                start,
                method,
                path,
                request_id,
                traceparent: context.traceparent(),
                request_bytes,
            }),
        }
    }
}

struct State {
    span: tracing::Span,
    start: Instant,
    method: String,
    path: String,
    request_id: String,
    traceparent: String,
    request_bytes: Option<u64>,
}

pin_project_lite::pin_project! {
    /// The response future of [`HttpService`].
    pub struct ResponseFuture<F> {
        #[pin]
        inner: F,
        state: Option<State>,
    }
}

/// The access event, INFO or ERROR.
#[allow(clippy::too_many_arguments)]
fn access(
    error: bool,
    message: &str,
    status: u16,
    nanos: u64,
    request_bytes: Option<u64>,
    response_bytes: Option<u64>,
    error_type: Option<&str>,
    error_message: Option<&str>,
) {
    macro_rules! emit {
        ($level:expr) => {
            tracing::event!(
                target: "logcollect::http::access",
                $level,
                http.response.status_code = status,
                event.duration = nanos,
                http.request.body.bytes = request_bytes,
                http.response.body.bytes = response_bytes,
                "error.type" = error_type,
                "error.message" = error_message,
                "{message}"
            )
        };
    }
    if error {
        emit!(Level::ERROR)
    } else {
        emit!(Level::INFO)
    }
}

fn panic_message(payload: &(dyn std::any::Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&'static str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.as_str()
    } else {
        "Box<dyn Any>"
    }
}

impl State {
    fn nanos(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    /// Returns the ids in the response and logs the access event.
    fn finish<B: Body>(self, response: &mut Response<B>) {
        let status = response.status();
        let headers = response.headers_mut();
        if !headers.contains_key(X_REQUEST_ID) {
            if let Ok(value) = HeaderValue::from_str(&self.request_id) {
                headers.insert(X_REQUEST_ID, value);
            }
        }
        if !headers.contains_key(TRACEPARENT) {
            if let Ok(value) = HeaderValue::from_str(&self.traceparent) {
                headers.insert(TRACEPARENT, value);
            }
        }
        let response_bytes =
            content_length(response.headers()).or_else(|| response.body().size_hint().exact());
        let _entered = self.span.enter();
        access(
            status.is_server_error(),
            &format!("{} {} {}", self.method, self.path, status.as_u16()),
            status.as_u16(),
            self.nanos(),
            self.request_bytes,
            response_bytes,
            None,
            None,
        );
    }
}

impl<F, B, E> Future for ResponseFuture<F>
where
    F: Future<Output = Result<Response<B>, E>>,
    B: Body + Default,
    E: fmt::Display,
{
    type Output = Result<Response<B>, E>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut this = self.project();
        let Some(state) = this.state.as_ref() else {
            // Polled after it completed (or panicked): nothing more to give.
            return Poll::Pending;
        };
        let polled = {
            let _entered = state.span.enter();
            let inner = this.inner.as_mut();
            std::panic::catch_unwind(AssertUnwindSafe(move || inner.poll(cx)))
        };
        match polled {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(result)) => {
                let Some(state) = this.state.take() else {
                    return Poll::Pending;
                };
                match result {
                    Ok(mut response) => {
                        state.finish(&mut response);
                        Poll::Ready(Ok(response))
                    }
                    Err(e) => {
                        let _entered = state.span.enter();
                        access(
                            true,
                            &format!("{} {} failed: {e}", state.method, state.path),
                            StatusCode::INTERNAL_SERVER_ERROR.as_u16(),
                            state.nanos(),
                            state.request_bytes,
                            None,
                            Some("service_error"),
                            Some(&e.to_string()),
                        );
                        drop(_entered);
                        Poll::Ready(Err(e))
                    }
                }
            }
            Err(payload) => {
                let Some(state) = this.state.take() else {
                    return Poll::Pending;
                };
                let message = panic_message(payload.as_ref());
                let mut response = Response::new(B::default());
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                let headers = response.headers_mut();
                for (name, value) in [
                    (X_REQUEST_ID, &state.request_id),
                    (HeaderName::from_static(TRACEPARENT), &state.traceparent),
                ] {
                    if let Ok(value) = HeaderValue::from_str(value) {
                        headers.insert(name, value);
                    }
                }
                let _entered = state.span.enter();
                access(
                    true,
                    &format!(
                        "{} {} 500: the handler panicked: {message}",
                        state.method, state.path
                    ),
                    500,
                    state.nanos(),
                    state.request_bytes,
                    Some(0),
                    Some("panic"),
                    Some(message),
                );
                drop(_entered);
                Poll::Ready(Ok(response))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_are_read_leniently() {
        let mut h = HeaderMap::new();
        assert_eq!(extract(&h), None);
        h.insert(
            TRACEPARENT,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        h.append(TRACESTATE, HeaderValue::from_static("a=1"));
        h.append(TRACESTATE, HeaderValue::from_static("b=2"));
        let c = extract(&h).unwrap();
        assert_eq!(c.tracestate.as_deref(), Some("a=1,b=2"));
        h.append(
            TRACEPARENT,
            HeaderValue::from_static("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"),
        );
        assert_eq!(extract(&h), None, "two traceparents: ignored");

        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("203.0.113.9, 10.0.0.1"),
        );
        assert_eq!(forwarded_for(&h), "203.0.113.9".parse().ok());
        h.insert(
            "x-forwarded-for",
            HeaderValue::from_static("[2001:db8::1]:443"),
        );
        assert_eq!(forwarded_for(&h), "2001:db8::1".parse().ok());
        h.insert("x-forwarded-for", HeaderValue::from_static("unknown"));
        assert_eq!(forwarded_for(&h), None);

        let mut h = HeaderMap::new();
        h.insert(X_REQUEST_ID, HeaderValue::from_static("abc-123"));
        assert_eq!(incoming_request_id(&h).as_deref(), Some("abc-123"));
        h.insert(X_REQUEST_ID, HeaderValue::from_static("has space"));
        assert_eq!(incoming_request_id(&h), None);
        h.insert(
            X_REQUEST_ID,
            HeaderValue::from_str(&"x".repeat(129)).unwrap(),
        );
        assert_eq!(incoming_request_id(&h), None);
    }
}
