//! `logcollect check`: walks the path an event takes — configuration, DNS, TCP, TLS, login and
//! vhost, the exchange, the permissions, a confirmed and routed test event — and stops at the
//! first break with a diagnosis.

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anstyle::{AnsiColor, Style};
use clap::Args;
use lapin::options::{BasicPublishOptions, ConfirmSelectOptions};
use lapin::types::ShortString;
use lapin::uri::{AMQPScheme, AMQPUri};
use lapin::{BasicProperties, Confirmation, Connection};
use logcollect::broker::{describe, Connector};
use logcollect::Config;
use logcollect::Probe;
use serde_json::json;

use crate::diagnose::{self, Diagnosis, NodeResult, TcpOutcome};
use crate::exit;

mod management;
#[cfg(feature = "mongodb")]
mod mongodb;
mod redis;

use management::{Endpoint, Management};

pub const AFTER_HELP: &str = "\
Steps, in order: config, dns, tcp, tls (amqps:// only), login (credentials and vhost), exchange
(declared durable with the configured type, as the shipper declares it: needs the configure
permission), publish (one INFO test event, published mandatory with a confirm: needs the write
permission), route (the broker did not return it: a queue is bound for its routing key). Each
step waits at most connect_timeout_ms. The test event is a real document: Logstash indexes it.
Then, not a step that fails: queue (the type of the queue --queue, its replicas and whether each
is online, its leader; from RabbitMQ's management HTTP API, which AMQP cannot tell). When that API
cannot be reached or refuses the user, the step is skipped with the reason (`not available`)
and the exit status stays what the steps above gave.

With transport = redis (LOGCOLLECT_TRANSPORT=redis), the steps are: config, connect (each node
of redis.uri: reachable, TLS, login), key (its type is redis.data_type, or it does not exist
yet), length (a list below redis.max_length: at it the shipper holds back), publish (the test
event pushed as the shipper pushes it), seen (it is in the list or stream, or a reader took it).

With transport = mongodb, the steps are: config, connect (each host of mongodb.uri answers),
login (the URI's user is let in), collection (its options are the configured capped size and
count, or none; created as the shipper creates it when missing), indexes (logcollect_time,
logcollect_service_time, logcollect_level_time with the configured expiry; missing ones are made;
one the server will not make is a warning, not a failure), publish (the test document inserted
with the configured write concern, _id = its event.id), seen (read back, @timestamp a date).

Exit status:
  0  every step passed: the test event was confirmed and routed to a queue (with
     transport = redis: pushed to the list or stream and seen there; with transport = mongodb:
     inserted and read back)
  1  a step failed (the diagnosis says which, why, and how to fix it)
  2  usage error, or the configuration is invalid (the config step)";

#[derive(Args, Debug)]
pub struct CheckArgs {
    /// Print the result as one JSON object: {ok, exit_code, steps: [{step, status, summary}],
    /// failure: {step, code, headline, detail, fix} or null}, and, when the management API
    /// answered, queue: {name, vhost, type, state, leader, node, members: [{node, online,
    /// leader}]}
    #[arg(long)]
    pub json: bool,

    /// Logger (target) of the test event: it is published with the routing key an application
    /// logging under this target gets
    #[arg(long, value_name = "TARGET", default_value = "logcollect::check")]
    pub logger: String,

    /// The queue whose type, replicas and their state the queue step reports (the stack's
    /// queue, which its definitions declare)
    #[arg(long, value_name = "NAME", default_value = "logcollect")]
    pub queue: String,

    /// RabbitMQ's management HTTP API, for the queue step:
    /// http[s]://[USER:PASSWORD@]HOST[:PORT][/PREFIX], or `none` to skip the step. Default: the
    /// node the test event went through, http on port 15672 (https on 15671 for amqps://), with
    /// that node's user and password (the password is never printed)
    #[arg(long, value_name = "URL", value_parser = management::parse)]
    pub management: Option<Management>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Ok,
    Skipped,
    /// Not as intended, and not a break: the shipper delivers all the same (a MongoDB index
    /// the server would not make).
    Warned,
    /// A node of a list failed; the walk went on with the next one.
    Failed(&'static str),
}

#[derive(Debug)]
struct Step {
    name: &'static str,
    status: Status,
    summary: String,
    /// The node of the list the step was with (1 is the first), when there are several.
    node: Option<usize>,
}

#[derive(Debug, Default)]
struct Report {
    steps: Vec<Step>,
    failure: Option<Diagnosis>,
    /// Each node of a list of several: whether it answers.
    nodes: Vec<NodeResult>,
    /// The node the steps being taken are with.
    node: Option<usize>,
    /// What the management API said of the queue.
    queue: Option<management::QueueInfo>,
    /// The Redis path was walked (`transport = redis`).
    redis: bool,
    /// The MongoDB path was walked (`transport = mongodb`).
    mongodb: bool,
}

impl Report {
    fn ok(&mut self, name: &'static str, summary: String) {
        self.steps.push(Step {
            name,
            status: Status::Ok,
            summary,
            node: self.node,
        });
    }

    fn skip(&mut self, name: &'static str, summary: String) {
        self.steps.push(Step {
            name,
            status: Status::Skipped,
            summary,
            node: self.node,
        });
    }

    #[cfg_attr(not(feature = "mongodb"), allow(dead_code))]
    fn warn(&mut self, name: &'static str, summary: String) {
        self.steps.push(Step {
            name,
            status: Status::Warned,
            summary,
            node: self.node,
        });
    }

    fn failed_node(&mut self, node: usize, diagnosis: &Diagnosis) {
        self.steps.push(Step {
            name: diagnosis.step,
            status: Status::Failed(diagnosis.code),
            summary: diagnosis.headline.clone(),
            node: Some(node),
        });
    }
}

pub fn run(config: Result<Config, logcollect::Error>, args: &CheckArgs) -> u8 {
    let mut report = Report::default();
    if let Ok(config) = &config {
        #[cfg(not(feature = "mongodb"))]
        if config.transport == logcollect::TransportKind::Mongodb {
            // Never a pass for a path it did not walk.
            report.failure = Some(diagnose::config_invalid(
                "`transport` is `mongodb`: this logcollect was built without its `mongodb` \
                 feature (`cargo install logcollect-cli` has it by default)"
                    .to_string(),
            ));
            let _ = if args.json {
                print_json(&report, exit::USAGE)
            } else {
                print_human(&report)
            };
            return exit::USAGE;
        }
        let mongodb = config.transport == logcollect::TransportKind::Mongodb;
        if config.transport == logcollect::TransportKind::Redis || mongodb {
            report.redis = !mongodb;
            report.mongodb = mongodb;
            let code = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => match runtime.block_on(async {
                    #[cfg(feature = "mongodb")]
                    if mongodb {
                        return mongodb::walk(config, args, &mut report).await;
                    }
                    redis::walk(config, args, &mut report).await
                }) {
                    Ok(()) => exit::OK,
                    Err(diagnosis) => {
                        let code = match diagnosis.step {
                            "config" => exit::USAGE,
                            _ => exit::FAILED,
                        };
                        report.failure = Some(diagnosis);
                        code
                    }
                },
                Err(e) => {
                    eprintln!("logcollect: cannot start a runtime: {e}");
                    return exit::FAILED;
                }
            };
            let _ = if args.json {
                print_json(&report, code)
            } else {
                print_human(&report)
            };
            return code;
        }
    }
    // The connector reads the TLS files: an unusable one is a configuration error too.
    let connector = config.and_then(|config| {
        let connector = Connector::new(&config, "logcollect check")?;
        Ok((config, connector))
    });
    let code = match connector {
        Err(e) => {
            let message = e.to_string();
            let message = message
                .strip_prefix("logcollect configuration: ")
                .or_else(|| message.strip_prefix("logcollect "))
                .unwrap_or(&message)
                .to_string();
            report.failure = Some(diagnose::config_invalid(message));
            exit::USAGE
        }
        Ok((config, connector)) => {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(runtime) => {
                    match runtime.block_on(walk(&config, &connector, args, &mut report)) {
                        Ok(()) => exit::OK,
                        Err(diagnosis) => {
                            report.failure = Some(diagnosis);
                            exit::FAILED
                        }
                    }
                }
                Err(e) => {
                    eprintln!("logcollect: cannot start a runtime: {e}");
                    return exit::FAILED;
                }
            }
        }
    };
    let printed = if args.json {
        print_json(&report, code)
    } else {
        print_human(&report)
    };
    // A closed stdout (`| head`) is not the check's failure.
    let _ = printed;
    code
}

/// Who logs in on node `node`: the URI's user, or the client certificate.
fn login_name(connector: &Connector, node: usize) -> String {
    if connector.is_external(node) {
        "the client certificate's subject (EXTERNAL)".to_string()
    } else {
        format!("`{}`", connector.nodes()[node].authority.userinfo.username)
    }
}

/// The steps; `Err` at the first break. Every node of the list is walked as far as the login
/// (a node that fails is reported and the next one tried); the first that answers carries the
/// exchange, publish and route steps.
async fn walk(
    config: &Config,
    connector: &Connector,
    args: &CheckArgs,
    report: &mut Report,
) -> Result<(), Diagnosis> {
    let nodes = connector.nodes();
    let several = nodes.len() > 1;
    let timeout = config.connect_timeout.max(Duration::from_millis(100));
    let exchange = config.exchange.as_str();
    let kind = config.exchange_type.as_str();
    let brokers = nodes.iter().map(describe).collect::<Vec<_>>().join(", ");
    let order = if several {
        format!(" ({} nodes, tried in order)", nodes.len())
    } else {
        String::new()
    };
    report.ok(
        "config",
        format!(
            "broker {brokers}{order}, user {}, exchange `{exchange}` ({kind}, durable), format {}",
            login_name(connector, 0),
            config.format.as_str()
        ),
    );

    let mut answering: Option<(usize, Connection)> = None;
    for (node, uri) in nodes.iter().enumerate() {
        report.node = several.then_some(node + 1);
        let outcome = node_steps(connector, node, timeout, report).await;
        report.node = None;
        let answers = outcome.is_ok();
        match outcome {
            Ok(connection) if answering.is_none() => answering = Some((node, connection)),
            Ok(connection) => close(&connection).await,
            Err(diagnosis) if !several => return Err(diagnosis),
            Err(diagnosis) => {
                report.failed_node(node + 1, &diagnosis);
                report.nodes.push(NodeResult {
                    broker: describe(uri),
                    failure: Some(diagnosis),
                });
                continue;
            }
        }
        if several && answers {
            report.nodes.push(NodeResult {
                broker: describe(uri),
                failure: None,
            });
        }
    }
    let Some((node, connection)) = answering else {
        return Err(diagnose::no_node_answers(&report.nodes, "broker_uri"));
    };
    let result = on_the_broker(
        &connection,
        connector,
        config,
        args,
        &nodes[node],
        timeout,
        report,
    )
    .await;
    close(&connection).await;
    result?;
    queue_step(args, config, &nodes[node], timeout, report).await;
    if several {
        match diagnose::some_nodes_down(&report.nodes, node + 1, "broker_uri") {
            Some(diagnosis) => return Err(diagnosis),
            None => report.ok(
                "nodes",
                format!(
                    "all {} nodes answer; the test event went through node {}",
                    nodes.len(),
                    node + 1
                ),
            ),
        }
    }
    Ok(())
}

async fn close(connection: &Connection) {
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        connection.close(200, ShortString::from("logcollect check done")),
    )
    .await;
}

/// DNS, TCP, TLS and the login with one node: its open connection.
async fn node_steps(
    connector: &Connector,
    node: usize,
    timeout: Duration,
    report: &mut Report,
) -> Result<Connection, Diagnosis> {
    let uri = &connector.nodes()[node];
    let vhost = diagnose::vhost(uri).to_string();

    // DNS
    let host = uri.authority.host.clone();
    let port = uri.authority.port;
    let lookup = tokio::net::lookup_host((host.as_str(), port));
    let addrs: Vec<SocketAddr> = match tokio::time::timeout(timeout, lookup).await {
        Err(_) => return Err(diagnose::dns_timeout(uri, timeout)),
        Ok(Err(e)) => return Err(diagnose::dns_failure(uri, &e)),
        Ok(Ok(addrs)) => addrs.collect(),
    };
    if addrs.is_empty() {
        let e = std::io::Error::other("the resolver returned no address");
        return Err(diagnose::dns_failure(uri, &e));
    }
    let list = addrs
        .iter()
        .map(|a| a.ip().to_string())
        .collect::<Vec<_>>()
        .join(", ");
    if host.parse::<std::net::IpAddr>().is_ok() {
        report.skip("dns", format!("`{host}` is an address"));
    } else {
        report.ok("dns", format!("`{host}` resolves to {list}"));
    }

    // TCP, to each address until one answers
    let mut attempts: Vec<(String, TcpOutcome)> = Vec::new();
    let mut reached = None;
    for addr in &addrs {
        let started = Instant::now();
        let outcome = match tokio::time::timeout(timeout, tokio::net::TcpStream::connect(addr))
            .await
        {
            Ok(Ok(_stream)) => TcpOutcome::Connected(started.elapsed()),
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => TcpOutcome::Refused,
            Ok(Err(e)) => TcpOutcome::Failed(e),
            Err(_) => TcpOutcome::TimedOut(timeout),
        };
        if matches!(outcome, TcpOutcome::Connected(_)) {
            reached = Some((*addr, outcome.describe()));
            break;
        }
        attempts.push((addr.to_string(), outcome));
    }
    let Some((addr, connected)) = reached else {
        return Err(diagnose::tcp_failure(uri, &attempts));
    };
    let earlier = attempts
        .iter()
        .map(|(a, o)| format!("; {a}: {}", o.describe()))
        .collect::<String>();
    report.ok("tcp", format!("{addr}: {connected}{earlier}"));

    // TLS: the library's handshake (tls_ca_file, the client certificate, tls_server_name), on
    // a connection of its own, so a certificate problem is told apart from a login problem.
    match uri.scheme {
        AMQPScheme::AMQP => report.skip("tls", "not used (amqp://)".to_string()),
        AMQPScheme::AMQPS => {
            connector
                .tls_handshake(node, addr)
                .await
                .map_err(|e| diagnose::tls_refused(uri, &e, timeout))?;
            let client = if connector.has_client_certificate() {
                ", our client certificate is accepted"
            } else {
                ""
            };
            report.ok(
                "tls",
                format!("handshake with `{host}` done, its certificate is trusted{client}"),
            );
        }
    }

    // Login: protocol header, credentials (or the certificate), vhost
    let connection = match tokio::time::timeout(timeout, connector.connect_node(node)).await {
        Err(_) => return Err(diagnose::login_timeout(uri, timeout)),
        Ok(Err(e)) => return Err(diagnose::login_failure(uri, &e)),
        Ok(Ok(connection)) => connection,
    };
    report.ok(
        "login",
        format!(
            "logged in as {} on vhost `{vhost}`",
            login_name(connector, node)
        ),
    );
    Ok(connection)
}

/// The queue's type and replicas, from the management API; never a failure of the check.
async fn queue_step(
    args: &CheckArgs,
    config: &Config,
    uri: &AMQPUri,
    timeout: Duration,
    report: &mut Report,
) {
    let vhost = diagnose::vhost(uri);
    let endpoint = match &args.management {
        Some(Management::Off) => {
            report.skip("queue", "not asked for (--management none)".to_string());
            return;
        }
        Some(Management::At(endpoint)) => {
            let mut endpoint = endpoint.clone();
            // A URL without credentials logs in as the broker URI does.
            if endpoint.user.is_none() {
                endpoint.user = Some(uri.authority.userinfo.username.clone());
                endpoint.password = Some(uri.authority.userinfo.password.clone());
            }
            endpoint
        }
        // A broker reached over TLS is asked over TLS too: the plugin's https:// listener.
        None => Endpoint {
            https: uri.scheme == AMQPScheme::AMQPS,
            host: uri.authority.host.clone(),
            port: match uri.scheme {
                AMQPScheme::AMQPS => management::DEFAULT_HTTPS_PORT,
                AMQPScheme::AMQP => management::DEFAULT_PORT,
            },
            prefix: String::new(),
            user: Some(uri.authority.userinfo.username.clone()),
            password: Some(uri.authority.userinfo.password.clone()),
        },
    };
    let ca_file = config.tls_ca_file.as_deref();
    match management::queue(&endpoint, ca_file, vhost, &args.queue, timeout).await {
        Ok(info) => {
            let summary = info.summary(&endpoint);
            report.ok("queue", summary);
            report.queue = Some(info);
        }
        Err(why) => report.skip(
            "queue",
            format!(
                "not available: {why}; the queue's type and replicas are not checked \
                 (--management URL names the API, --management none skips this)"
            ),
        ),
    }
}

/// The exchange, the permissions and the test event.
async fn on_the_broker(
    connection: &Connection,
    connector: &Connector,
    config: &Config,
    args: &CheckArgs,
    uri: &AMQPUri,
    timeout: Duration,
    report: &mut Report,
) -> Result<(), Diagnosis> {
    let exchange = config.exchange.as_str();
    let kind = config.exchange_type.as_str();
    let x = ShortString::from(exchange);
    let channel = open_channel(connection, timeout).await?;
    let declare = connector.declare_exchange(&channel);
    match tokio::time::timeout(timeout, declare).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => {
            // PRECONDITION_FAILED closed the channel; a passive declare on a fresh one shows
            // that the exchange does exist.
            let exists = match diagnose::broker_reply(&e) {
                Some((406, _)) => Some(exists_passively(connection, &x, timeout).await),
                _ => None,
            };
            return Err(diagnose::exchange_failure(exchange, kind, uri, &e, exists));
        }
        Err(_) => return Err(step_timeout("exchange", "declaring the exchange", timeout)),
    }
    report.ok(
        "exchange",
        format!("`{exchange}` declared: {kind}, durable, as the shipper declares it (configure permission granted)"),
    );

    // The test event, encoded by the library as the shipper would encode it.
    let (routing_key, body, properties) = test_event(config, &args.logger);
    let publish = async {
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await?;
        channel
            .basic_publish(
                x.clone(),
                ShortString::from(routing_key.as_str()),
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                &body,
                properties,
            )
            .await?
            .await
    };
    let confirmation = match tokio::time::timeout(timeout, publish).await {
        Err(_) => {
            return Err(diagnose::confirm_timeout(
                timeout,
                connection.status().blocked(),
            ))
        }
        Ok(Err(e)) => return Err(diagnose::publish_failure(exchange, uri, &e)),
        Ok(Ok(confirmation)) => confirmation,
    };
    match confirmation {
        Confirmation::Ack(returned) => {
            report.ok(
                "publish",
                format!(
                    "test event confirmed by the broker (routing key `{routing_key}`, write permission granted)"
                ),
            );
            if returned.is_some() {
                return Err(diagnose::unroutable(exchange, &routing_key, kind));
            }
            report.ok(
                "route",
                format!("a queue is bound for `{routing_key}`: the test event was routed"),
            );
            Ok(())
        }
        Confirmation::Nack(_) => Err(diagnose::nacked(exchange)),
        Confirmation::NotRequested => Err(step_timeout("publish", "confirm mode", timeout)),
    }
}

async fn open_channel(
    connection: &Connection,
    timeout: Duration,
) -> Result<lapin::Channel, Diagnosis> {
    match tokio::time::timeout(timeout, connection.create_channel()).await {
        Ok(Ok(channel)) => Ok(channel),
        Ok(Err(e)) => Err(Diagnosis {
            step: "exchange",
            code: "channel_failed",
            headline: "the broker did not open a channel".to_string(),
            detail: e.to_string(),
            fix: "the broker limits channels per connection, or the connection failed; the \
                  broker's log names the reason"
                .to_string(),
        }),
        Err(_) => Err(step_timeout("exchange", "opening a channel", timeout)),
    }
}

async fn exists_passively(connection: &Connection, x: &ShortString, timeout: Duration) -> bool {
    let passive = async {
        let channel = connection.create_channel().await?;
        let declared = diagnose::find_exchange(&channel, x.as_str()).await;
        let _ = channel.close(200, ShortString::from("checked")).await;
        declared
    };
    matches!(tokio::time::timeout(timeout, passive).await, Ok(Ok(())))
}

fn step_timeout(step: &'static str, what: &str, after: Duration) -> Diagnosis {
    Diagnosis {
        step,
        code: "broker_timeout",
        headline: format!("the broker did not answer ({what})"),
        detail: format!("no answer within {}", diagnose::secs(after)),
        fix: "the broker is overloaded or stuck; check `rabbitmq-diagnostics status` and its log"
            .to_string(),
    }
}

/// One INFO document in the configured format, its routing key and properties.
fn test_event(config: &Config, logger: &str) -> (String, Vec<u8>, BasicProperties) {
    let probe = Probe::new(config, logger, "logcollect check: test event");
    let properties = BasicProperties::default()
        .with_delivery_mode(2)
        .with_content_type(ShortString::from("application/json"))
        .with_message_id(ShortString::from(probe.id.as_str()))
        .with_app_id(ShortString::try_new(probe.service.as_str()).unwrap_or_default())
        .with_timestamp(probe.timestamp)
        .with_type(ShortString::from(probe.format.as_str()));
    (probe.routing_key, probe.body, properties)
}

fn print_json(report: &Report, code: u8) -> std::io::Result<()> {
    let steps: Vec<_> = report
        .steps
        .iter()
        .map(|s| {
            let mut step = json!({
                "step": s.name,
                "status": match s.status {
                    Status::Ok => "ok",
                    Status::Skipped => "skipped",
                    Status::Warned => "warning",
                    Status::Failed(_) => "failed",
                },
                "summary": s.summary,
            });
            if let Some(node) = s.node {
                step["node"] = json!(node);
            }
            if let Status::Failed(code) = s.status {
                step["code"] = json!(code);
            }
            step
        })
        .chain(
            report
                .failure
                .iter()
                .map(|f| json!({"step": f.step, "status": "failed", "summary": f.headline})),
        )
        .collect();
    let mut out = json!({
        "ok": report.failure.is_none(),
        "exit_code": code,
        "steps": steps,
        "failure": report.failure.as_ref().map(Diagnosis::to_json),
    });
    if let Some(queue) = &report.queue {
        out["queue"] = queue.to_json();
    }
    if !report.nodes.is_empty() {
        out["nodes"] = report
            .nodes
            .iter()
            .enumerate()
            .map(|(i, n)| n.to_json(i + 1))
            .collect();
    }
    let mut stdout = std::io::stdout().lock();
    writeln!(stdout, "{out}")?;
    stdout.flush()
}

fn print_human(report: &Report) -> std::io::Result<()> {
    let mut out = anstream::stdout().lock();
    let ok = Style::new().fg_color(Some(AnsiColor::Green.into())).bold();
    let skip = Style::new().dimmed();
    let warn = Style::new().fg_color(Some(AnsiColor::Yellow.into())).bold();
    let fail = Style::new().fg_color(Some(AnsiColor::Red.into())).bold();
    let bold = Style::new().bold();
    for step in &report.steps {
        let (style, word) = match step.status {
            Status::Ok => (ok, "ok  "),
            Status::Skipped => (skip, "skip"),
            Status::Warned => (warn, "WARN"),
            Status::Failed(_) => (fail, "FAIL"),
        };
        let node = step.node.map(|n| format!("node {n}: ")).unwrap_or_default();
        writeln!(
            out,
            "{style}{word}{style:#}  {:<9} {node}{}",
            step.name, step.summary
        )?;
    }
    match &report.failure {
        Some(f) => {
            writeln!(
                out,
                "{fail}FAIL{fail:#}  {:<9} {bold}{}{bold:#}",
                f.step, f.headline
            )?;
            writeln!(out, "      {bold}detail:{bold:#} {}", f.detail)?;
            writeln!(out, "      {bold}fix:{bold:#}    {}", f.fix)?;
            writeln!(
                out,
                "{fail}check failed{fail:#} at step `{}` ({})",
                f.step, f.code
            )?;
        }
        None => writeln!(
            out,
            "{ok}check passed{ok:#}: {}",
            if report.redis {
                "the test event was pushed to Redis and seen there"
            } else if report.mongodb {
                "the test document was inserted into MongoDB and read back"
            } else {
                "the test event was confirmed and routed to a queue"
            }
        )?,
    }
    out.flush()
}
