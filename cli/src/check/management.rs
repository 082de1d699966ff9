//! The queue step of `check`: the queue's type, its replicas and their state, from RabbitMQ's
//! management HTTP API (`GET /api/queues/{vhost}/{name}`), which AMQP cannot tell. A plain
//! HTTP/1.1 GET on the runtime `check` already has: one request, no client library to carry.

use std::fmt;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The port the management plugin listens on unless configured otherwise.
pub const DEFAULT_PORT: u16 = 15672;
/// More than any queue's description; a larger answer is not the API's.
const MAX_RESPONSE: usize = 1 << 20;

/// Where the management API is: `http://[USER[:PASSWORD]@]HOST[:PORT][/PREFIX]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// `management.path_prefix`, without a trailing slash ("" when none).
    pub prefix: String,
    pub user: Option<String>,
    pub password: Option<String>,
}

/// Never prints the password (`check`'s output is pasted into tickets).
impl fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{self}")
    }
}

/// The URL without its credentials.
impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        write!(f, "http://{host}:{}{}", self.port, self.prefix)
    }
}

/// What `--management` takes: a URL, or `none` (no queue step).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Management {
    Off,
    At(Endpoint),
}

/// clap's parser for `--management`.
pub fn parse(text: &str) -> Result<Management, String> {
    if text == "none" {
        return Ok(Management::Off);
    }
    let rest = text.strip_prefix("http://").ok_or_else(|| {
        if text.starts_with("https://") {
            "https:// is not supported: give the plain http:// listener of the management \
             plugin, or `none`"
                .to_string()
        } else {
            "expected http://[USER:PASSWORD@]HOST[:PORT][/PREFIX] or `none`".to_string()
        }
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
        None => (rest, ""),
    };
    let (userinfo, hostport) = match authority.rfind('@') {
        Some(i) => (Some(&authority[..i]), &authority[i + 1..]),
        None => (None, authority),
    };
    let (user, password) = match userinfo {
        None => (None, None),
        Some(info) => match info.split_once(':') {
            Some((u, p)) => (Some(percent_decode(u)?), Some(percent_decode(p)?)),
            None => (Some(percent_decode(info)?), None),
        },
    };
    let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
        let (host, after) = v6
            .split_once(']')
            .ok_or("an IPv6 address needs its closing `]`")?;
        (host, after.strip_prefix(':'))
    } else {
        match hostport.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (hostport, None),
        }
    };
    if host.is_empty() {
        return Err("the URL names no host".to_string());
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("`{p}` is not a port number"))?,
    };
    Ok(Management::At(Endpoint {
        host: host.to_string(),
        port,
        prefix: path.to_string(),
        user,
        password,
    }))
}

fn percent_decode(text: &str) -> Result<String, String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or("a `%` in the credentials is not followed by two hex digits")?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "the credentials are not UTF-8".to_string())
}

/// Path segments are escaped whole: `/` (the default vhost) becomes `%2F`.
fn percent_encode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for k in 0..4 {
            if k <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> (18 - 6 * k)) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// One replica of the queue (a classic queue has one copy: its node).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub node: String,
    pub online: bool,
    pub leader: bool,
}

/// What the management API says of the queue.
#[derive(Debug, Clone)]
pub struct QueueInfo {
    pub name: String,
    pub vhost: String,
    /// `classic`, `quorum`, `stream`.
    pub kind: String,
    /// The queue process's state (`running`, …), when the API gives it.
    pub state: Option<String>,
    pub leader: Option<String>,
    /// The classic queue's node.
    pub node: Option<String>,
    /// Replicas (quorum, stream); empty for a classic queue.
    pub members: Vec<Member>,
}

impl QueueInfo {
    fn from_json(name: &str, vhost: &str, doc: &Value) -> QueueInfo {
        let text = |key: &str| doc[key].as_str().map(str::to_string);
        let list = |key: &str| -> Vec<String> {
            doc[key]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|v| v.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default()
        };
        let leader = text("leader");
        let online = list("online");
        let members = list("members")
            .into_iter()
            .map(|node| Member {
                online: online.contains(&node),
                leader: leader.as_deref() == Some(node.as_str()),
                node,
            })
            .collect();
        QueueInfo {
            name: name.to_string(),
            vhost: vhost.to_string(),
            kind: text("type").unwrap_or_else(|| "classic".to_string()),
            state: text("state"),
            leader,
            node: text("node"),
            members,
        }
    }

    /// One line for the report.
    pub fn summary(&self, via: &Endpoint) -> String {
        let head = format!(
            "`{}` (vhost `{}`) is a {} queue",
            self.name, self.vhost, self.kind
        );
        let state = match self.state.as_deref() {
            Some(s) if s != "running" => format!(", state {s}"),
            _ => String::new(),
        };
        let body = if self.members.is_empty() {
            match &self.node {
                Some(node) => format!("on node {node}, no replicas"),
                None => "with no node named".to_string(),
            }
        } else {
            let offline: Vec<&str> = self
                .members
                .iter()
                .filter(|m| !m.online)
                .map(|m| m.node.as_str())
                .collect();
            let count = self.members.len();
            let online = if offline.is_empty() {
                format!("{count} replicas, all online")
            } else {
                format!(
                    "{count} replicas, {} online, offline: {}",
                    count - offline.len(),
                    offline.join(", ")
                )
            };
            let leader = match &self.leader {
                Some(l) => format!("leader {l}"),
                None => "no leader".to_string(),
            };
            let members = self
                .members
                .iter()
                .map(|m| {
                    let role = match (m.leader, m.online) {
                        (true, _) => "leader",
                        (false, true) => "online",
                        (false, false) => "offline",
                    };
                    format!("{} ({role})", m.node)
                })
                .collect::<Vec<_>>()
                .join(", ");
            format!("{online}; {leader}; members {members}")
        };
        format!("{head}{state}: {body} (management API at {via})")
    }

    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "vhost": self.vhost,
            "type": self.kind,
            "state": self.state,
            "leader": self.leader,
            "node": self.node,
            "members": self.members.iter().map(|m| json!({
                "node": m.node,
                "online": m.online,
                "leader": m.leader,
            })).collect::<Vec<_>>(),
        })
    }
}

/// Asks the API about queue `name` on `vhost`; `Err` says, in words, why it is not available.
pub async fn queue(
    endpoint: &Endpoint,
    vhost: &str,
    name: &str,
    timeout: Duration,
) -> Result<QueueInfo, String> {
    let path = format!(
        "{}/api/queues/{}/{}",
        endpoint.prefix,
        percent_encode(vhost),
        percent_encode(name)
    );
    let user = endpoint.user.clone().unwrap_or_default();
    let (status, body) = match tokio::time::timeout(timeout, get(endpoint, &path)).await {
        Err(_) => {
            return Err(format!(
                "the management API at {endpoint} did not answer within {}",
                crate::diagnose::secs(timeout)
            ))
        }
        Ok(Err(e)) => return Err(format!("the management API at {endpoint}: {e}")),
        Ok(Ok(answer)) => answer,
    };
    match status {
        200 => {}
        401 => {
            return Err(format!(
                "the management API at {endpoint} refused user `{user}` (401): it needs the \
                 credentials of a user tagged management, monitoring or administrator (pass \
                 --management http://USER:PASSWORD@HOST:PORT)"
            ))
        }
        404 => {
            return Err(format!(
                "the management API at {endpoint} knows no queue `{name}` on vhost `{vhost}` \
                 (404); name the stack's queue with --queue"
            ))
        }
        other => {
            let first = String::from_utf8_lossy(&body)
                .chars()
                .take(200)
                .collect::<String>();
            return Err(format!(
                "the management API at {endpoint} answered HTTP {other}: {first}"
            ));
        }
    }
    let doc: Value = serde_json::from_slice(&body)
        .map_err(|e| format!("the management API at {endpoint} answered no JSON: {e}"))?;
    Ok(QueueInfo::from_json(name, vhost, &doc))
}

/// One GET with basic authentication: the status code and the (de-chunked) body.
async fn get(endpoint: &Endpoint, path: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let mut stream = tokio::net::TcpStream::connect((endpoint.host.as_str(), endpoint.port))
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::ConnectionRefused {
                std::io::Error::new(
                    e.kind(),
                    "connection refused (is the rabbitmq_management plugin enabled on this port?)",
                )
            } else {
                e
            }
        })?;
    let credentials = format!(
        "{}:{}",
        endpoint.user.as_deref().unwrap_or_default(),
        endpoint.password.as_deref().unwrap_or_default()
    );
    let host = if endpoint.host.contains(':') {
        format!("[{}]", endpoint.host)
    } else {
        endpoint.host.clone()
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}:{}\r\nAuthorization: Basic {}\r\n\
         Accept: application/json\r\nUser-Agent: logcollect-check\r\nConnection: close\r\n\r\n",
        endpoint.port,
        base64(credentials.as_bytes())
    );
    stream.write_all(request.as_bytes()).await?;
    let mut raw = Vec::new();
    (&mut stream)
        .take(MAX_RESPONSE as u64 + 1)
        .read_to_end(&mut raw)
        .await?;
    if raw.len() > MAX_RESPONSE {
        return Err(std::io::Error::other("the answer is larger than 1 MiB"));
    }
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> std::io::Result<(u16, Vec<u8>)> {
    let bad = |what: &str| std::io::Error::other(format!("not an HTTP answer: {what}"));
    let end = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| bad("no end of headers"))?;
    let head = String::from_utf8_lossy(&raw[..end]);
    let body = &raw[end + 4..];
    let mut lines = head.split("\r\n");
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| bad("no status code"))?;
    let chunked = lines.any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.trim().eq_ignore_ascii_case("chunked")
        })
    });
    if !chunked {
        return Ok((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let line_end = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or_else(|| bad("a chunk without its size line"))?;
        let size_text = String::from_utf8_lossy(&rest[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size =
            usize::from_str_radix(size_text, 16).map_err(|_| bad("a chunk size is not hex"))?;
        rest = &rest[line_end + 2..];
        if size == 0 {
            return Ok((status, out));
        }
        let chunk = rest
            .get(..size)
            .ok_or_else(|| bad("a chunk is cut short"))?;
        out.extend_from_slice(chunk);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_parse_and_print_without_the_password() {
        let Ok(Management::At(e)) = parse("http://ops:s%40cret@rabbit-1:15673/mgmt/") else {
            panic!("parse")
        };
        assert_eq!(e.host, "rabbit-1");
        assert_eq!(e.port, 15673);
        assert_eq!(e.prefix, "/mgmt");
        assert_eq!(e.user.as_deref(), Some("ops"));
        assert_eq!(e.password.as_deref(), Some("s@cret"));
        assert_eq!(e.to_string(), "http://rabbit-1:15673/mgmt");
        assert!(!format!("{e:?}").contains("cret"));

        let Ok(Management::At(e)) = parse("http://[::1]") else {
            panic!("parse")
        };
        assert_eq!((e.host.as_str(), e.port), ("::1", DEFAULT_PORT));
        assert_eq!(e.to_string(), "http://[::1]:15672");

        assert_eq!(parse("none"), Ok(Management::Off));
        assert!(parse("https://rabbit:15671").is_err());
        assert!(parse("rabbit:15672").is_err());
        assert!(parse("http://rabbit:99999").is_err());
        assert!(parse("http://:15672").is_err());
    }

    #[test]
    fn paths_escape_the_default_vhost_and_credentials_encode_as_base64() {
        assert_eq!(percent_encode("/"), "%2F");
        assert_eq!(percent_encode("logs 1"), "logs%201");
        assert_eq!(base64(b"guest:guest"), "Z3Vlc3Q6Z3Vlc3Q=");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b"abc"), "YWJj");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn chunked_answers_are_joined() {
        let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        let (status, body) = parse_response(raw).expect("parse");
        assert_eq!(status, 200);
        assert_eq!(body, b"{\"a\":1}");
        let raw = b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\n\r\n{}";
        assert_eq!(parse_response(raw).expect("parse"), (404, b"{}".to_vec()));
    }
}
