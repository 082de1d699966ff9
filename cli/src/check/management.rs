//! The queue step of `check`: the queue's type, its replicas and their state, from RabbitMQ's
//! management HTTP API (`GET /api/queues/{vhost}/{name}`), which AMQP cannot tell. One GET with
//! hyper's client; https:// trusts what the AMQP connection trusts (the system's roots and
//! `tls_ca_file`).

use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use http_body_util::{BodyExt, Empty, LengthLimitError, Limited};
use hyper::body::Bytes;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, USER_AGENT};
use hyper::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::{pem::PemObject, CertificateDer};
use serde_json::{json, Value};

/// The port the management plugin listens on unless configured otherwise.
pub const DEFAULT_PORT: u16 = 15672;
/// The port of its https:// listener, by convention.
pub const DEFAULT_HTTPS_PORT: u16 = 15671;
/// More than any queue's description; a larger answer is not the API's.
const MAX_RESPONSE: usize = 1 << 20;

/// Where the management API is: `http[s]://[USER[:PASSWORD]@]HOST[:PORT][/PREFIX]`.
#[derive(Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// https:// rather than http://.
    pub https: bool,
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
        write!(f, "{}://{host}:{}{}", self.scheme(), self.port, self.prefix)
    }
}

impl Endpoint {
    fn scheme(&self) -> &'static str {
        if self.https {
            "https"
        } else {
            "http"
        }
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
    let (https, rest) = match (text.strip_prefix("http://"), text.strip_prefix("https://")) {
        (Some(rest), _) => (false, rest),
        (_, Some(rest)) => (true, rest),
        _ => {
            return Err("expected http[s]://[USER:PASSWORD@]HOST[:PORT][/PREFIX] or `none`".into())
        }
    };
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
        None if https => DEFAULT_HTTPS_PORT,
        None => DEFAULT_PORT,
        Some(p) => p
            .parse::<u16>()
            .ok()
            .filter(|p| *p > 0)
            .ok_or_else(|| format!("`{p}` is not a port number"))?,
    };
    Ok(Management::At(Endpoint {
        https,
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
/// `ca_file` (`tls_ca_file`) is trusted besides the system's roots for https://.
pub async fn queue(
    endpoint: &Endpoint,
    ca_file: Option<&Path>,
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
    let (status, body) = match tokio::time::timeout(timeout, get(endpoint, ca_file, &path)).await {
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
                 --management {}://USER:PASSWORD@HOST:PORT)",
                endpoint.scheme()
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

/// One GET with basic authentication: the status code and the body (at most 1 MiB).
async fn get(
    endpoint: &Endpoint,
    ca_file: Option<&Path>,
    path: &str,
) -> Result<(u16, Bytes), String> {
    let host = if endpoint.host.contains(':') {
        format!("[{}]", endpoint.host)
    } else {
        endpoint.host.clone()
    };
    let uri: Uri = format!("{}://{host}:{}{path}", endpoint.scheme(), endpoint.port)
        .parse()
        .map_err(|e| format!("not a usable URL: {e}"))?;
    let credentials = format!(
        "{}:{}",
        endpoint.user.as_deref().unwrap_or_default(),
        endpoint.password.as_deref().unwrap_or_default()
    );
    let mut authorization = HeaderValue::try_from(format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(credentials)
    ))
    .map_err(|e| e.to_string())?;
    authorization.set_sensitive(true);
    let request = Request::get(uri)
        .header(AUTHORIZATION, authorization)
        .header(ACCEPT, "application/json")
        .header(USER_AGENT, "logcollect-check")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;

    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls_config(ca_file)?)
        .https_or_http()
        .enable_http1()
        .build();
    // One request: no connection kept for another.
    let client = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(0)
        .build(connector);
    let answer = client.request(request).await.map_err(|e| describe(&e))?;
    let status = answer.status().as_u16();
    let body = Limited::new(answer.into_body(), MAX_RESPONSE)
        .collect()
        .await
        .map_err(|e| {
            if e.is::<LengthLimitError>() {
                "the answer is larger than 1 MiB".to_string()
            } else {
                describe(e.as_ref())
            }
        })?
        .to_bytes();
    Ok((status, body))
}

/// The AMQP connection's trust, for https://: the platform's verifier with `tls_ca_file`'s
/// certificates as extra roots.
fn tls_config(ca_file: Option<&Path>) -> Result<rustls::ClientConfig, String> {
    let extra_roots = match ca_file {
        None => Vec::new(),
        Some(path) => CertificateDer::pem_file_iter(path)
            .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
            .map_err(|e| format!("`tls_ca_file` `{}`: {e}", path.display()))?,
    };
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let verifier =
        rustls_platform_verifier::Verifier::new_with_extra_roots(extra_roots, provider.clone())
            .map_err(|e| format!("no TLS verifier: {e}"))?;
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .dangerous() // not dangerous: the platform's own verification, as AMQP's
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth())
}

/// The most precise cause of a failed request (hyper's outer errors say only "Connect").
fn describe(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    loop {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return "connection refused (is the rabbitmq_management plugin enabled on this \
                        port?)"
                    .to_string();
            }
        }
        match cause.source() {
            Some(next) => cause = next,
            None => return cause.to_string(),
        }
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
        let Ok(Management::At(e)) = parse("https://rabbit") else {
            panic!("parse")
        };
        assert!(e.https);
        assert_eq!(e.to_string(), "https://rabbit:15671");
        assert!(parse("ftp://rabbit:15671").is_err());
        assert!(parse("rabbit:15672").is_err());
        assert!(parse("http://rabbit:99999").is_err());
        assert!(parse("http://:15672").is_err());
    }

    #[test]
    fn paths_escape_the_default_vhost() {
        assert_eq!(percent_encode("/"), "%2F");
        assert_eq!(percent_encode("logs 1"), "logs%201");
    }

    /// A server of canned answers on 127.0.0.1, one connection per answer, https:// with
    /// `tls`; sends back each request's head.
    fn serve(
        tls: Option<Arc<rustls::ServerConfig>>,
        answers: Vec<Vec<u8>>,
    ) -> (u16, std::sync::mpsc::Receiver<String>) {
        use std::io::{Read, Write};

        fn exchange(stream: &mut (impl Read + Write), answer: &[u8]) -> std::io::Result<String> {
            let mut head = Vec::new();
            let mut byte = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut byte)?;
                head.push(byte[0]);
            }
            stream.write_all(answer)?;
            stream.flush()?;
            Ok(String::from_utf8_lossy(&head).into_owned())
        }

        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let (heads, received) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for answer in answers {
                let Ok((tcp, _)) = listener.accept() else {
                    return;
                };
                let head = match &tls {
                    Some(config) => {
                        let conn = rustls::ServerConnection::new(config.clone()).expect("tls");
                        let mut stream = rustls::StreamOwned::new(conn, tcp);
                        let head = exchange(&mut stream, &answer);
                        stream.conn.send_close_notify();
                        let _ = stream.flush();
                        head
                    }
                    None => exchange(&mut { tcp }, &answer),
                };
                let _ = heads.send(head.unwrap_or_else(|e| format!("failed: {e}")));
            }
        });
        (port, received)
    }

    fn tls_server(leaf: &logcollect_test_support::certs::Leaf) -> Arc<rustls::ServerConfig> {
        let certs = CertificateDer::pem_slice_iter(leaf.cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .expect("certificate");
        let key =
            rustls::pki_types::PrivateKeyDer::from_pem_slice(leaf.key_pem.as_bytes()).expect("key");
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .expect("versions")
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .expect("server config");
        Arc::new(config)
    }

    fn endpoint(url: &str) -> Endpoint {
        match parse(url) {
            Ok(Management::At(endpoint)) => endpoint,
            other => panic!("{url}: {other:?}"),
        }
    }

    const QUORUM: &str = r#"{"type":"quorum","state":"running","leader":"rabbit@a","members":["rabbit@a","rabbit@b","rabbit@c"],"online":["rabbit@a","rabbit@c"]}"#;

    #[tokio::test]
    async fn https_asks_with_basic_auth_trusting_tls_ca_file_and_reads_a_chunked_answer() {
        use logcollect_test_support::certs;

        let ca = certs::Ca::new("logcollect management test CA");
        let dir = std::env::temp_dir().join(format!("lc-mgmt-https-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        let ca_file = certs::write(&dir, "ca.pem", &ca.pem);
        let (first, second) = QUORUM.split_at(40);
        let answer = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\
             connection: close\r\n\r\n{:x}\r\n{first}\r\n{:x}\r\n{second}\r\n0\r\n\r\n",
            first.len(),
            second.len()
        );
        let (port, heads) = serve(
            Some(tls_server(&ca.server())),
            vec![answer.into_bytes(), b"never sent".to_vec()],
        );
        let api = endpoint(&format!("https://ops:s%40cret@127.0.0.1:{port}/mgmt"));
        let timeout = Duration::from_secs(10);

        let info = queue(&api, Some(&ca_file), "/", "logcollect", timeout)
            .await
            .expect("the queue's description");
        let head = heads.recv().expect("the request");
        assert!(
            head.starts_with("GET /mgmt/api/queues/%2F/logcollect HTTP/1.1\r\n"),
            "{head}"
        );
        // "ops:s@cret"
        assert!(
            head.contains("\r\nauthorization: Basic b3BzOnNAY3JldA==\r\n"),
            "{head}"
        );
        assert_eq!(info.kind, "quorum");
        assert_eq!(info.leader.as_deref(), Some("rabbit@a"));
        let offline: Vec<&str> = info
            .members
            .iter()
            .filter(|m| !m.online)
            .map(|m| m.node.as_str())
            .collect();
        assert_eq!(offline, ["rabbit@b"]);
        assert!(info
            .summary(&api)
            .contains(&format!("3 replicas, 2 online, offline: rabbit@b; leader rabbit@a; members rabbit@a (leader), rabbit@b (offline), rabbit@c (online) (management API at https://127.0.0.1:{port}/mgmt)")));

        // Without `tls_ca_file` the test CA is not trusted: not available, and why.
        let why = queue(&api, None, "/", "logcollect", timeout)
            .await
            .expect_err("an untrusted certificate");
        assert!(
            why.starts_with(&format!(
                "the management API at https://127.0.0.1:{port}/mgmt: "
            )) && why.contains("certificate"),
            "{why}"
        );
        assert!(!why.contains("cret"), "{why}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn an_answer_over_1_mib_is_an_error_and_404_and_401_say_why() {
        let big = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            2 * MAX_RESPONSE
        );
        let mut big = big.into_bytes();
        big.resize(big.len() + 2 * MAX_RESPONSE, b' ');
        let not_found =
            b"HTTP/1.1 404 Not Found\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}".to_vec();
        let refused =
            b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}"
                .to_vec();
        let (port, _heads) = serve(None, vec![big, not_found, refused]);
        let api = endpoint(&format!("http://lc-pub:pw@127.0.0.1:{port}"));
        let timeout = Duration::from_secs(10);
        let ask = || queue(&api, None, "logs", "lc", timeout);

        let why = ask().await.expect_err("too large");
        assert_eq!(
            why,
            format!(
                "the management API at http://127.0.0.1:{port}: the answer is larger than 1 MiB"
            )
        );
        let why = ask().await.expect_err("404");
        assert!(
            why.contains("knows no queue `lc` on vhost `logs` (404)"),
            "{why}"
        );
        let why = ask().await.expect_err("401");
        assert!(why.contains("refused user `lc-pub` (401)"), "{why}");
    }
}
