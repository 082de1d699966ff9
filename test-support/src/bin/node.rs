//! `scripts/node`'s implementation: a throw-away RabbitMQ node beside the system one, the same
//! code the tests start theirs with.
//!
//!   logcollect-test-node start NAME PORT [CONF]   start NAME@localhost, plain AMQP on
//!                                                 127.0.0.1:PORT (CONF: extra rabbitmq.conf
//!                                                 lines), wait until it runs, print its URI
//!   logcollect-test-node restart NAME PORT        start it again on the files it left (a
//!                                                 stopped or killed cluster member rejoins)
//!   logcollect-test-node stop NAME                stop it and delete its directory
//!   logcollect-test-node env NAME PORT            the exports that point the tests at it
//!
//! Files live in DIR/NAME, DIR being LOGCOLLECT_TEST_NODES_DIR, else `logcollect-nodes` in the
//! system's temporary directory (`node::nodes_dir`).
//! LOGCOLLECT_TEST_NODE_PLUGINS (comma-separated, e.g. `rabbitmq_management`): plugins `start` enables.

use std::path::PathBuf;
use std::process::ExitCode;

use logcollect_test_support::node::{nodes_dir, plain_conf, plain_uri, stop_node, Node};

const USAGE: &str =
    "usage: logcollect-test-node start NAME PORT [CONF] | restart NAME PORT | stop NAME | env NAME PORT";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let nodes = nodes_dir();
    // Made traversable by everyone: the node runs as the rabbitmq user.
    if std::fs::create_dir_all(&nodes).is_ok() {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(&nodes, std::fs::Permissions::from_mode(0o755));
    }
    let dir = |name: &str| -> PathBuf { nodes.join(name) };
    let port = |s: &str| -> Option<u16> { s.parse().ok().filter(|p| *p != 5672 && *p > 0) };
    match args.iter().map(String::as_str).collect::<Vec<_>>()[..] {
        ["start", name, p, ref extra @ ..] if extra.len() <= 1 => {
            let Some(p) = port(p) else {
                eprintln!("node: PORT must be a port number other than 5672\n{USAGE}");
                return ExitCode::from(2);
            };
            let mut conf = plain_conf(p);
            if let Some(extra) = extra.first() {
                conf.push_str(extra);
                conf.push('\n');
            }
            let plugins = std::env::var("LOGCOLLECT_TEST_NODE_PLUGINS").unwrap_or_default();
            let plugins: Vec<&str> = plugins
                .split(',')
                .map(str::trim)
                .filter(|p| !p.is_empty())
                .collect();
            Node::start_in(&dir(name), name, p, &conf, &plugins, &[]).keep();
            println!("{}", plain_uri(p));
            ExitCode::SUCCESS
        }
        ["restart", name, p] => {
            let Some(p) = port(p) else {
                eprintln!("node: PORT must be a port number other than 5672\n{USAGE}");
                return ExitCode::from(2);
            };
            Node::relaunch_in(&dir(name), name, p).keep();
            println!("{}", plain_uri(p));
            ExitCode::SUCCESS
        }
        ["stop", name] => {
            stop_node(&format!("{name}@localhost"));
            let _ = std::fs::remove_dir_all(dir(name));
            ExitCode::SUCCESS
        }
        ["env", name, p] => {
            let Some(p) = port(p) else {
                eprintln!("node: PORT must be a port number other than 5672\n{USAGE}");
                return ExitCode::from(2);
            };
            println!("export LOGCOLLECT_TEST_AMQP_URL='{}'", plain_uri(p));
            println!("export RABBITMQ_NODENAME='{name}@localhost'");
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("{USAGE}");
            ExitCode::from(2)
        }
    }
}
