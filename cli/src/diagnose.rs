//! Diagnoses: what broke on the way to the broker, said as a headline, the detail and the fix,
//! decided from the broker's own replies (reply codes and texts) and the socket's errors.

use std::io;
use std::time::Duration;

use lapin::uri::{AMQPScheme, AMQPUri, SASLMechanism};
use logcollect::broker::{BrokerError, TlsProblem};
use serde_json::json;

/// One break on the path, ready to print.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnosis {
    /// The step that failed (`config`, `dns`, `tcp`, `tls`, `login`, `exchange`, `publish`,
    /// `route`).
    pub step: &'static str,
    /// A stable, machine-readable name of the cause (`access_refused`, `vhost_not_found`…).
    pub code: &'static str,
    pub headline: String,
    pub detail: String,
    pub fix: String,
}

impl Diagnosis {
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "step": self.step,
            "code": self.code,
            "headline": self.headline,
            "detail": self.detail,
            "fix": self.fix,
        })
    }
}

/// Where we connect, for messages: `amqp://host:port/vhost` (no credentials).
pub use logcollect::broker::describe;

pub fn scheme(uri: &AMQPUri) -> &'static str {
    match uri.scheme {
        AMQPScheme::AMQP => "amqp",
        AMQPScheme::AMQPS => "amqps",
    }
}

/// The vhost as the broker names it (`/` for `%2f`).
pub fn vhost(uri: &AMQPUri) -> &str {
    if uri.vhost.is_empty() {
        "/"
    } else {
        &uri.vhost
    }
}

/// Whether the exchange exists, without changing anything: a passive declare (which closes
/// the channel when it does not).
pub async fn find_exchange(channel: &lapin::Channel, exchange: &str) -> lapin::Result<()> {
    channel
        .exchange_declare(
            exchange.into(),
            lapin::ExchangeKind::Topic,
            lapin::options::ExchangeDeclareOptions {
                passive: true,
                ..Default::default()
            },
            lapin::types::FieldTable::default(),
        )
        .await
}

/// The broker's reply inside a lapin error: its reply code and text (`ACCESS_REFUSED - …`).
pub fn broker_reply(e: &lapin::Error) -> Option<(u16, String)> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(err) => Some((err.get_id(), err.get_message().to_string())),
        _ => None,
    }
}

/// The I/O error inside a lapin error, if that is what it is.
fn io_error(e: &lapin::Error) -> Option<&io::Error> {
    match e.kind() {
        lapin::ErrorKind::IOError(e) | lapin::ErrorKind::RuntimeShutdownError(e) => Some(e),
        _ => None,
    }
}

const CONFIG_FIX: &str = "set it in LOGCOLLECT_BROKER_URI (or `broker_uri` in the file given \
     with --config / LOGCOLLECT_CONFIG)";

pub fn config_invalid(message: String) -> Diagnosis {
    Diagnosis {
        step: "config",
        code: "config_invalid",
        headline: "the configuration is invalid".to_string(),
        detail: message,
        fix: "correct the setting named above (LOGCOLLECT_* variables, or the file given with \
              --config / LOGCOLLECT_CONFIG); docs/configuration.md lists every key"
            .to_string(),
    }
}

pub fn dns_failure(uri: &AMQPUri, error: &io::Error) -> Diagnosis {
    let host = &uri.authority.host;
    Diagnosis {
        step: "dns",
        code: "dns_failure",
        headline: format!("cannot resolve the broker's host name `{host}`"),
        detail: format!("looking up `{host}` failed: {error}"),
        fix: format!(
            "check the host in the broker URI ({}); check this machine's resolver \
             (/etc/resolv.conf, /etc/hosts); {CONFIG_FIX}",
            describe(uri)
        ),
    }
}

pub fn dns_timeout(uri: &AMQPUri, after: Duration) -> Diagnosis {
    let host = &uri.authority.host;
    Diagnosis {
        step: "dns",
        code: "dns_timeout",
        headline: format!("looking up the broker's host name `{host}` timed out"),
        detail: format!("no answer from the resolver within {}", secs(after)),
        fix: "check this machine's resolver (/etc/resolv.conf) and its network; or put an IP \
              address in the broker URI"
            .to_string(),
    }
}

/// Every address refused, timed out or failed: the most telling failure wins.
pub fn tcp_failure(uri: &AMQPUri, attempts: &[(String, TcpOutcome)]) -> Diagnosis {
    let port = uri.authority.port;
    let host = &uri.authority.host;
    let tried = attempts
        .iter()
        .map(|(addr, outcome)| format!("{addr}: {}", outcome.describe()))
        .collect::<Vec<_>>()
        .join("; ");
    let refused = attempts
        .iter()
        .any(|(_, o)| matches!(o, TcpOutcome::Refused));
    let timed_out = attempts
        .iter()
        .any(|(_, o)| matches!(o, TcpOutcome::TimedOut(_)));
    let default_port = match uri.scheme {
        AMQPScheme::AMQP => 5672,
        AMQPScheme::AMQPS => 5671,
    };
    if refused {
        Diagnosis {
            step: "tcp",
            code: "connection_refused",
            headline: format!("nothing accepts connections on {host}:{port}"),
            detail: format!("connection refused ({tried}): the broker is not running there, or listens on another port or address"),
            fix: format!(
                "start RabbitMQ on {host} (e.g. `systemctl start rabbitmq-server`, or \
                 `rabbitmq-server -detached`), or correct the host and port in the broker URI \
                 ({default_port} is the {} default); {CONFIG_FIX}",
                scheme(uri)
            ),
        }
    } else if timed_out {
        Diagnosis {
            step: "tcp",
            code: "tcp_timeout",
            headline: format!("no answer from {host}:{port}"),
            detail: format!("the TCP connection was neither accepted nor refused ({tried}): a firewall drops the packets, or the host is down or not this one"),
            fix: format!(
                "check that {host} is the broker's address and that port {port} is open \
                 between this machine and it (firewall, security group); {CONFIG_FIX}"
            ),
        }
    } else {
        Diagnosis {
            step: "tcp",
            code: "tcp_error",
            headline: format!("cannot open a TCP connection to {host}:{port}"),
            detail: tried,
            fix: format!("check the network route to {host} and the broker URI; {CONFIG_FIX}"),
        }
    }
}

/// How one TCP connection attempt ended.
#[derive(Debug)]
pub enum TcpOutcome {
    Connected(Duration),
    Refused,
    TimedOut(Duration),
    Failed(io::Error),
}

impl TcpOutcome {
    pub fn describe(&self) -> String {
        match self {
            TcpOutcome::Connected(t) => format!("connected in {:.1} ms", t.as_secs_f64() * 1e3),
            TcpOutcome::Refused => "refused".to_string(),
            TcpOutcome::TimedOut(t) => format!("no answer within {}", secs(*t)),
            TcpOutcome::Failed(e) => e.to_string(),
        }
    }
}

pub fn tls_failure(uri: &AMQPUri, error: &io::Error) -> Diagnosis {
    let host = &uri.authority.host;
    let port = uri.authority.port;
    let text = error_chain(error);
    let lower = text.to_ascii_lowercase();
    let (code, headline, fix) = if lower.contains("certificate") || lower.contains("unknownissuer")
    {
        (
            "tls_certificate",
            format!("the broker's TLS certificate is not accepted for `{host}`"),
            format!(
                "the certificate must name `{host}` and be signed by a CA this machine trusts \
                 (the system store); use the name on the certificate in the broker URI, or \
                 install the CA; {CONFIG_FIX}"
            ),
        )
    } else if lower.contains("corrupt message") || lower.contains("invalidcontenttype") {
        (
            "not_tls",
            format!("{host}:{port} does not speak TLS"),
            format!(
                "that port speaks plain AMQP: use amqp:// (port 5672), or the broker's TLS port \
                 (5671 by default) with amqps://; {CONFIG_FIX}"
            ),
        )
    } else {
        (
            "tls_failure",
            format!("the TLS handshake with {host}:{port} failed"),
            format!(
                "check that {port} is the broker's TLS port (5671 by default) and that its TLS \
                 settings accept TLS 1.2 or 1.3; {CONFIG_FIX}"
            ),
        )
    };
    Diagnosis {
        step: "tls",
        code,
        headline,
        detail: text,
        fix,
    }
}

/// The library's TLS handshake failed: the cause it told, in the check's words.
pub fn tls_refused(uri: &AMQPUri, error: &BrokerError, timeout: Duration) -> Diagnosis {
    let host = &uri.authority.host;
    let (problem, detail) = match error {
        BrokerError::Timeout { .. } => return tls_timeout(uri, timeout),
        BrokerError::Tls {
            problem, detail, ..
        } => (*problem, detail.clone()),
        other => (TlsProblem::Other, other.to_string()),
    };
    let (code, headline, fix) = match problem {
        TlsProblem::UntrustedServer => (
            "tls_certificate",
            format!("the broker's TLS certificate is not trusted (`{host}`)"),
            "set tls_ca_file (LOGCOLLECT_TLS_CA_FILE) to the CA certificate that signed the \
             broker's certificate, or install that CA in this machine's store"
                .to_string(),
        ),
        TlsProblem::NameMismatch => (
            "tls_certificate",
            format!("the broker's TLS certificate is not valid for `{host}`"),
            "use the host name the certificate carries in the broker URI, or set \
             tls_server_name (LOGCOLLECT_TLS_SERVER_NAME)"
                .to_string(),
        ),
        TlsProblem::ClientCertificateRefused { had_one: false } => (
            "client_certificate_required",
            format!("{host} requires a client certificate"),
            "set tls_cert_file and tls_key_file (LOGCOLLECT_TLS_CERT_FILE, \
             LOGCOLLECT_TLS_KEY_FILE) to a certificate signed by a CA the broker trusts"
                .to_string(),
        ),
        TlsProblem::ClientCertificateRefused { had_one: true } => (
            "client_certificate_refused",
            format!("{host} refused our client certificate"),
            "tls_cert_file must be signed by a CA the broker trusts (ssl_options.cacertfile), \
             be valid now and match tls_key_file"
                .to_string(),
        ),
        _ => return tls_failure(uri, &io::Error::other(detail)),
    };
    Diagnosis {
        step: "tls",
        code,
        headline,
        detail,
        fix,
    }
}

/// One node of a list, as `check` found it.
#[derive(Debug)]
pub struct NodeResult {
    /// Without credentials.
    pub broker: String,
    /// Why it does not answer; `None` when it does.
    pub failure: Option<Diagnosis>,
}

impl NodeResult {
    pub fn to_json(&self, node: usize) -> serde_json::Value {
        match &self.failure {
            None => json!({"node": node, "broker": self.broker, "answers": true}),
            Some(f) => json!({
                "node": node,
                "broker": self.broker,
                "answers": false,
                "step": f.step,
                "code": f.code,
            }),
        }
    }
}

fn node_lines(nodes: &[NodeResult]) -> String {
    nodes
        .iter()
        .enumerate()
        .filter_map(|(i, n)| {
            let f = n.failure.as_ref()?;
            Some(format!(
                "node {} {}: {} ({}): {}",
                i + 1,
                n.broker,
                f.headline,
                f.code,
                f.detail
            ))
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// No node of the list answers.
/// `setting` names the node list (`broker_uri`, `redis.uri`).
pub fn no_node_answers(nodes: &[NodeResult], setting: &str) -> Diagnosis {
    let fix = nodes
        .iter()
        .find_map(|n| n.failure.as_ref())
        .map(|f| format!("node 1: {}", f.fix))
        .unwrap_or_default();
    Diagnosis {
        step: "nodes",
        code: "no_node_answers",
        headline: format!(
            "none of the {} nodes of `{setting}` answers: nothing can be delivered",
            nodes.len()
        ),
        detail: node_lines(nodes),
        fix,
    }
}

/// The path works through node `through`, but some nodes of the list do not answer.
pub fn some_nodes_down(nodes: &[NodeResult], through: usize, setting: &str) -> Option<Diagnosis> {
    let down: Vec<usize> = nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| n.failure.is_some())
        .map(|(i, _)| i + 1)
        .collect();
    let first = nodes.iter().find_map(|n| n.failure.as_ref())?;
    let which = down
        .iter()
        .map(|n| n.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    Some(Diagnosis {
        step: "nodes",
        code: "node_unreachable",
        headline: format!(
            "{} of {} nodes of `{setting}` do not answer (node {which}); events get through \
             node {through}",
            down.len(),
            nodes.len()
        ),
        detail: node_lines(nodes),
        fix: format!(
            "without them there is no failover: {}; or remove the node from `{setting}`",
            first.fix
        ),
    })
}

/// A connection failure of the library's connector (tail, collect), in the check's shape.
pub fn broker_error(e: &BrokerError) -> Diagnosis {
    let code = match e {
        BrokerError::Unreachable { .. } => "unreachable",
        BrokerError::LoginRefused { .. } => "access_refused",
        BrokerError::VhostRefused { .. } => "vhost_refused",
        BrokerError::PermissionDenied { .. } => "permission_denied",
        BrokerError::ExchangeMismatch { .. } => "exchange_mismatch",
        BrokerError::Tls { .. } => "tls_failure",
        BrokerError::AllNodes { .. } => "no_node_answers",
        BrokerError::Timeout { .. } => "connect_timeout",
        _ => "connection_failed",
    };
    let headline = e.headline();
    let headline = headline.strip_suffix(", retrying").unwrap_or(headline);
    Diagnosis {
        step: "connect",
        code,
        headline: headline.to_string(),
        detail: e.to_string(),
        fix: "`logcollect check` walks each node of `broker_uri` and says what to fix".to_string(),
    }
}

pub fn tls_timeout(uri: &AMQPUri, after: Duration) -> Diagnosis {
    let host = &uri.authority.host;
    let port = uri.authority.port;
    Diagnosis {
        step: "tls",
        code: "tls_timeout",
        headline: format!("the TLS handshake with {host}:{port} did not finish"),
        detail: format!("no TLS answer within {}", secs(after)),
        fix: format!(
            "check that {port} is the broker's TLS port (5671 by default), not its plain AMQP \
             port (5672, use amqp:// there); {CONFIG_FIX}"
        ),
    }
}

/// The AMQP handshake (protocol header, login, vhost) failed.
pub fn login_failure(uri: &AMQPUri, e: &lapin::Error) -> Diagnosis {
    let user = &uri.authority.userinfo.username;
    let vhost = vhost(uri);
    let external = uri.query.auth_mechanism == Some(SASLMechanism::External);
    if let Some((code, text)) = broker_reply(e) {
        let lower = text.to_ascii_lowercase();
        return match code {
            403 if external => Diagnosis {
                step: "login",
                code: "access_refused",
                headline: "the broker refused the EXTERNAL login of the client certificate"
                    .to_string(),
                detail: format!("{code} {text}"),
                fix: "the user the certificate's subject names must exist on the broker \
                      (`rabbitmqctl add_user NAME x`, `rabbitmqctl clear_password NAME`, \
                      `rabbitmqctl set_permissions ...`); the broker's `ssl_cert_login_from` \
                      decides which part of the subject is the name (the log shows the name it \
                      looked for)"
                    .to_string(),
            },
            403 => Diagnosis {
                step: "login",
                code: "access_refused",
                headline: format!("the broker refused the login of user `{user}`"),
                detail: format!("{code} {text}"),
                fix: format!(
                    "check the user name and password in the broker URI (percent-encode special \
                     characters); the user must exist on the broker (`rabbitmqctl list_users`); \
                     RabbitMQ's `guest` user may only log in from localhost; {CONFIG_FIX}"
                ),
            },
            530 if lower.contains("not found") || lower.contains("no such vhost") => Diagnosis {
                step: "login",
                code: "vhost_not_found",
                headline: format!("the virtual host `{vhost}` does not exist on the broker"),
                detail: format!("{code} {text}"),
                fix: format!(
                    "the vhost is the path of the broker URI, percent-encoded (`/%2f` is the \
                     default vhost `/`); correct it, or create it: `rabbitmqctl add_vhost {vhost}` \
                     then `rabbitmqctl set_permissions -p {vhost} {user} '.*' '.*' '.*'`"
                ),
            },
            530 => Diagnosis {
                step: "login",
                code: "vhost_access_refused",
                headline: format!("user `{user}` may not use the virtual host `{vhost}`"),
                detail: format!("{code} {text}"),
                fix: format!(
                    "grant permissions: `rabbitmqctl set_permissions -p {vhost} {user} \
                     '^logstash$' '^logstash$' ''` (configure, write, read on the exchange), or \
                     use the vhost this user has"
                ),
            },
            _ => Diagnosis {
                step: "login",
                code: "connection_closed_by_broker",
                headline: "the broker closed the connection while logging in".to_string(),
                detail: format!("{code} {text}"),
                fix: "read the broker's reason above; the broker's log says more".to_string(),
            },
        };
    }
    if let lapin::ErrorKind::InvalidProtocolVersion(version) = e.kind() {
        return Diagnosis {
            step: "login",
            code: "not_amqp_0_9_1",
            headline: format!(
                "{}:{} speaks another AMQP version ({version})",
                uri.authority.host, uri.authority.port
            ),
            detail: e.to_string(),
            fix: "point the broker URI at RabbitMQ's AMQP 0-9-1 port (5672, or 5671 with TLS)"
                .to_string(),
        };
    }
    if let lapin::ErrorKind::ParsingError(_) = e.kind() {
        return Diagnosis {
            step: "login",
            code: "not_amqp",
            headline: format!(
                "{}:{} does not speak AMQP",
                uri.authority.host, uri.authority.port
            ),
            detail: format!("its answer to the AMQP protocol header is not AMQP ({e})"),
            fix: format!(
                "point the broker URI at RabbitMQ's AMQP port (5672 for amqp://, 5671 for \
                 amqps://), not the management UI (15672) or another service; {CONFIG_FIX}"
            ),
        };
    }
    if let lapin::ErrorKind::AuthProviderError(text) = e.kind() {
        return Diagnosis {
            step: "login",
            code: "auth_mechanism",
            headline: "the login could not be made".to_string(),
            detail: text.clone(),
            fix: "check `auth_mechanism` in the broker URI's query (PLAIN is the default)"
                .to_string(),
        };
    }
    let closed = io_error(e).is_some_and(|io| {
        matches!(
            io.kind(),
            io::ErrorKind::ConnectionReset
                | io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe
        )
    }) || matches!(e.kind(), lapin::ErrorKind::InvalidConnectionState(_));
    if closed {
        let tls_hint = match uri.scheme {
            AMQPScheme::AMQP => "a TLS port (use amqps://), ",
            AMQPScheme::AMQPS => "",
        };
        return Diagnosis {
            step: "login",
            code: "handshake_closed",
            headline: format!(
                "{}:{} closed the connection during the AMQP handshake",
                uri.authority.host, uri.authority.port
            ),
            detail: format!(
                "{e}; RabbitMQ does this to a login it refuses when the client cannot be told why, \
                 and anything that is not an AMQP 0-9-1 listener does it to the protocol header"
            ),
            fix: format!(
                "check that the port is RabbitMQ's AMQP port and not {tls_hint}the management \
                 port or another service; check the user name, password and vhost; the broker's \
                 log names the reason"
            ),
        };
    }
    Diagnosis {
        step: "login",
        code: "handshake_failed",
        headline: "the AMQP handshake with the broker failed".to_string(),
        detail: e.to_string(),
        fix: "check the broker URI; the broker's log names the reason".to_string(),
    }
}

pub fn login_timeout(uri: &AMQPUri, after: Duration) -> Diagnosis {
    Diagnosis {
        step: "login",
        code: "handshake_timeout",
        headline: format!(
            "{}:{} accepted the TCP connection but did not complete the AMQP handshake",
            uri.authority.host, uri.authority.port
        ),
        detail: format!(
            "no answer within {}: the port is not RabbitMQ's AMQP listener, or the broker is \
             overloaded",
            secs(after)
        ),
        fix: format!(
            "check the port in the broker URI (5672 for amqp://, 5671 for amqps://); check the \
             broker's health (`rabbitmq-diagnostics status`); {CONFIG_FIX}"
        ),
    }
}

/// What `exchange.declare` said when it failed.
pub fn exchange_failure(
    exchange: &str,
    kind: &str,
    uri: &AMQPUri,
    e: &lapin::Error,
    exists: Option<bool>,
) -> Diagnosis {
    let user = &uri.authority.userinfo.username;
    let vhost = vhost(uri);
    let Some((code, text)) = broker_reply(e) else {
        return Diagnosis {
            step: "exchange",
            code: "exchange_declare_failed",
            headline: format!("declaring exchange `{exchange}` failed"),
            detail: e.to_string(),
            fix: "the connection failed meanwhile; run the check again".to_string(),
        };
    };
    let reserved = exchange.starts_with("amq.");
    match code {
        406 => {
            let what = inequivalent(&text)
                .map(|(arg, wanted, current)| match arg.as_str() {
                    "type" => format!(
                        "it exists as a {current} exchange; the configuration asks for {wanted}"
                    ),
                    "durable" if current == "false" => {
                        "it exists as a transient (non-durable) exchange; the shipper declares it durable".to_string()
                    }
                    "auto_delete" => format!(
                        "it exists with auto_delete={current}; the shipper declares auto_delete={wanted}"
                    ),
                    _ => format!("its `{arg}` is {current}; the shipper declares {wanted}"),
                })
                .unwrap_or_else(|| "it exists with other settings".to_string());
            let passive = match exists {
                Some(true) => "; a passive declare confirms it exists",
                _ => "",
            };
            Diagnosis {
                step: "exchange",
                code: "exchange_mismatch",
                headline: format!(
                    "exchange `{exchange}` exists with another type or durability: {what}"
                ),
                detail: format!("{code} {text}{passive}"),
                fix: if reserved {
                    format!(
                        "`{exchange}` is one of the broker's own exchanges: make the \
                         configuration match it (LOGCOLLECT_EXCHANGE_TYPE), or publish to an \
                         exchange of your own (LOGCOLLECT_EXCHANGE)"
                    )
                } else {
                    format!(
                        "make the configuration match what exists (LOGCOLLECT_EXCHANGE_TYPE; the \
                         shipper always declares durable, not auto-delete), or publish to \
                         another exchange (LOGCOLLECT_EXCHANGE), or delete `{exchange}` so the \
                         shipper declares it as a durable {kind} exchange (`rabbitmqadmin delete \
                         exchange name={exchange}`; its bindings go with it: re-bind the \
                         Logstash queue with `logstash.#`)"
                    )
                },
            }
        }
        403 => Diagnosis {
            step: "exchange",
            code: "configure_refused",
            headline: format!("user `{user}` may not declare exchange `{exchange}`"),
            detail: format!("{code} {text}"),
            fix: if reserved || text.contains("reserved") {
                "exchange names starting with `amq.` belong to the broker: choose another name \
                 (LOGCOLLECT_EXCHANGE)"
                    .to_string()
            } else {
                format!(
                    "the shipper declares the exchange at every connection, which needs the \
                     configure permission on it: `rabbitmqctl set_permissions -p {vhost} {user} \
                     '^{exchange}$' '^{exchange}$' ''` (configure, write, read)"
                )
            },
        },
        _ => Diagnosis {
            step: "exchange",
            code: "exchange_declare_failed",
            headline: format!("the broker refused to declare exchange `{exchange}`"),
            detail: format!("{code} {text}"),
            fix: "read the broker's reason above".to_string(),
        },
    }
}

/// `inequivalent arg 'type' for exchange 'x' in vhost '/': received 'topic' but current is
/// 'direct'` → `("type", "topic", "direct")`.
pub fn inequivalent(text: &str) -> Option<(String, String, String)> {
    let re = regex::Regex::new(
        r"inequivalent arg '([^']+)'.*received '([^']*)' but current is '([^']*)'",
    )
    .ok()?;
    let c = re.captures(text)?;
    Some((c[1].to_string(), c[2].to_string(), c[3].to_string()))
}

/// The test publish failed (a channel error) before or instead of its confirm.
pub fn publish_failure(exchange: &str, uri: &AMQPUri, e: &lapin::Error) -> Diagnosis {
    let user = &uri.authority.userinfo.username;
    let vhost = vhost(uri);
    match broker_reply(e) {
        Some((403, text)) => Diagnosis {
            step: "publish",
            code: "write_refused",
            headline: format!("user `{user}` may not publish to exchange `{exchange}`"),
            detail: format!("403 {text}"),
            fix: format!(
                "grant the write permission on the exchange: `rabbitmqctl set_permissions -p \
                 {vhost} {user} '^{exchange}$' '^{exchange}$' ''` (configure, write, read)"
            ),
        },
        Some((code, text)) => Diagnosis {
            step: "publish",
            code: "publish_refused",
            headline: format!("the broker refused the test event on exchange `{exchange}`"),
            detail: format!("{code} {text}"),
            fix: "read the broker's reason above".to_string(),
        },
        None => Diagnosis {
            step: "publish",
            code: "publish_failed",
            headline: "publishing the test event failed".to_string(),
            detail: e.to_string(),
            fix: "the connection failed meanwhile; run the check again; the broker's log names \
                  the reason"
                .to_string(),
        },
    }
}

pub fn nacked(exchange: &str) -> Diagnosis {
    Diagnosis {
        step: "publish",
        code: "nacked",
        headline: format!("the broker refused to take the test event (nack) on `{exchange}`"),
        detail: "a queue bound for its routing key refuses messages (x-overflow=reject-publish \
                 at its length limit), or the broker failed to store it"
            .to_string(),
        fix: "drain or enlarge the full queue (its consumer, Logstash, may be down); the shipper \
              retries nacked events, so they pile up in the application meanwhile"
            .to_string(),
    }
}

pub fn confirm_timeout(after: Duration, blocked: bool) -> Diagnosis {
    if blocked {
        Diagnosis {
            step: "publish",
            code: "broker_blocked",
            headline: "the broker blocks publishers (a resource alarm)".to_string(),
            detail: format!(
                "the connection is blocked (connection.blocked): RabbitMQ stops taking messages \
                 while its memory or disk alarm is on; no confirm within {}",
                secs(after)
            ),
            fix: "free memory or disk on the broker (`rabbitmq-diagnostics alarms`); queues \
                  nobody reads fill it up (is Logstash consuming?); the shipper waits and \
                  resumes by itself"
                .to_string(),
        }
    } else {
        Diagnosis {
            step: "publish",
            code: "confirm_timeout",
            headline: "the broker did not confirm the test event".to_string(),
            detail: format!("no confirm within {}", secs(after)),
            fix: "the broker is overloaded or stuck; check `rabbitmq-diagnostics status` and its \
                  log"
            .to_string(),
        }
    }
}

pub fn unroutable(exchange: &str, routing_key: &str, kind: &str) -> Diagnosis {
    Diagnosis {
        step: "route",
        code: "no_queue_bound",
        headline: format!(
            "no queue is bound for routing key `{routing_key}`: nothing would reach Logstash"
        ),
        detail: format!(
            "the broker confirmed the test event and returned it (312 NO_ROUTE): no binding on \
             {kind} exchange `{exchange}` matches `{routing_key}`; the shipper keeps such events \
             and publishes them again until a queue takes them"
        ),
        fix: format!(
            "start Logstash (its pipeline declares the queue `logcollect` and binds it with \
             `logstash.#`), or bind a queue yourself: `rabbitmqadmin declare queue \
             name=logcollect durable=true` and `rabbitmqadmin declare binding \
             source={exchange} destination=logcollect routing_key='logstash.#'` (or `cargo run \
             --example queue -- bind logcollect`)"
        ),
    }
}

/// Seconds, briefly: `10 s`, `0.5 s`.
pub fn secs(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s.fract() == 0.0 {
        format!("{s:.0} s")
    } else {
        format!("{s:.1} s")
    }
}

/// An error and its sources, `: `-joined.
pub fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut next = e.source();
    while let Some(cause) = next {
        let text = cause.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        next = cause.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn inequivalent_arg_texts_are_read() {
        let text = "PRECONDITION_FAILED - inequivalent arg 'type' for exchange 'x' in vhost '/': \
                    received 'topic' but current is 'direct'";
        assert_eq!(
            inequivalent(text),
            Some(("type".into(), "topic".into(), "direct".into()))
        );
        assert_eq!(inequivalent("something else"), None);
    }

    #[test]
    fn tcp_failures_prefer_refused_then_timeout() {
        let uri: AMQPUri = "amqp://u:p@h:5672/%2f".parse().unwrap();
        let d = tcp_failure(
            &uri,
            &[
                (
                    "[::1]:5672".into(),
                    TcpOutcome::TimedOut(Duration::from_secs(1)),
                ),
                ("127.0.0.1:5672".into(), TcpOutcome::Refused),
            ],
        );
        assert_eq!(d.code, "connection_refused");
        let d = tcp_failure(
            &uri,
            &[(
                "1.2.3.4:5672".into(),
                TcpOutcome::TimedOut(Duration::from_secs(1)),
            )],
        );
        assert_eq!(d.code, "tcp_timeout");
        assert!(d.detail.contains("1.2.3.4:5672: no answer within 1 s"));
    }

    #[test]
    fn seconds_are_brief() {
        assert_eq!(secs(Duration::from_secs(10)), "10 s");
        assert_eq!(secs(Duration::from_millis(500)), "0.5 s");
    }
}
