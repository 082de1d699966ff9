//! A RabbitMQ cluster of a test's own, started with scripts/cluster on the test's node names and
//! ports (never the system broker), its nodes killed, frozen, stopped and restarted by the test;
//! everything it started is stopped when it is dropped, so also when the test fails. Shared by
//! tests/cluster.rs and cli/tests/cluster_collect.rs.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use logcollect_test_support::node::nodes_dir;
use serde_json::Value;

/// The quorum queue of compose/rabbitmq/definitions.json, which scripts/cluster loads.
pub const QUEUE: &str = "logcollect";
/// Generous: a loaded 2-core machine.
pub const LIMIT: Duration = Duration::from_secs(120);

const HOW_TO_GET_RABBITMQ: &str = "this test starts its own RabbitMQ cluster with \
scripts/cluster: install the `rabbitmq-server` package (Debian: `apt-get install \
rabbitmq-server`; scripts/test does) and run as root or as the rabbitmq user";

/// `path` in the repository (the test may belong to the root crate or to cli/).
fn repo(path: &str) -> PathBuf {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let root = here
        .ancestors()
        .find(|d| d.join("scripts/cluster").is_file())
        .unwrap_or(&here);
    root.join(path)
}

fn sbin_path() -> String {
    format!(
        "{}:/usr/sbin:/sbin",
        std::env::var("PATH").unwrap_or_default()
    )
}

/// A cluster of this test's own, stopped with everything it started when dropped.
pub struct Cluster {
    name: String,
    port: u16,
    pub nodes: usize,
    /// Whether each node runs the management plugin (HTTP API on its port + 10000).
    management: bool,
}

impl Cluster {
    pub fn start(name: &str, port: u16, nodes: usize) -> Cluster {
        Cluster::start_with(name, port, nodes, false)
    }

    /// The same with the management plugin on every node: `management_url(i)`.
    pub fn start_managed(name: &str, port: u16, nodes: usize) -> Cluster {
        Cluster::start_with(name, port, nodes, true)
    }

    fn start_with(name: &str, port: u16, nodes: usize, management: bool) -> Cluster {
        let cluster = Cluster {
            name: name.to_string(),
            port,
            nodes,
            management,
        };
        // Whatever a killed earlier run left.
        let _ = cluster.script(&["stop"]);
        let out = cluster
            .script(&["start", &nodes.to_string()])
            .unwrap_or_else(|e| panic!("cannot run scripts/cluster ({e}); {HOW_TO_GET_RABBITMQ}"));
        assert!(
            out.status.success(),
            "scripts/cluster start failed: {}; {HOW_TO_GET_RABBITMQ}",
            String::from_utf8_lossy(&out.stderr)
        );
        let uris = String::from_utf8_lossy(&out.stdout).trim().to_string();
        let expected: Vec<String> = (0..nodes).map(|i| cluster.uri(i)).collect();
        assert_eq!(uris, expected.join(","), "the node list it prints");
        cluster
    }

    fn script(&self, args: &[&str]) -> std::io::Result<std::process::Output> {
        Command::new(repo("scripts/cluster"))
            .args(args)
            .env("LOGCOLLECT_TEST_CLUSTER_NAME", &self.name)
            .env("LOGCOLLECT_TEST_CLUSTER_PORT", self.port.to_string())
            .env(
                "LOGCOLLECT_TEST_CLUSTER_MANAGEMENT",
                if self.management { "1" } else { "" },
            )
            .env("PATH", sbin_path())
            .stdin(Stdio::null())
            .output()
    }

    pub fn uri(&self, i: usize) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.port_of(i))
    }

    pub fn port_of(&self, i: usize) -> u16 {
        self.port + i as u16
    }

    /// Node `i`'s management API (a cluster started with `start_managed`), without credentials.
    pub fn management_url(&self, i: usize) -> String {
        assert!(self.management, "started without the management plugin");
        format!("http://127.0.0.1:{}", self.port_of(i) + 10000)
    }

    fn short(&self, i: usize) -> String {
        format!("{}{}", self.name, i + 1)
    }

    pub fn node(&self, i: usize) -> String {
        format!("{}@localhost", self.short(i))
    }

    /// `uri(i)` as the shipper's stats show it.
    pub fn shown(&self, i: usize) -> String {
        format!("node=amqp://127.0.0.1:{}/%2f", self.port_of(i))
    }

    pub fn pid(&self, i: usize) -> String {
        let short = self.short(i);
        let file = nodes_dir().join(format!("{short}/{short}.pid"));
        std::fs::read_to_string(&file)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()))
            .trim()
            .to_string()
    }

    pub fn signal(&self, i: usize, signal: &str) {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &self.pid(i)])
            .status()
            .expect("kill");
        assert!(status.success(), "kill -{signal} {}", self.node(i));
    }

    /// SIGKILL, and waits until the process is gone.
    pub fn kill(&self, i: usize) {
        let pid = self.pid(i);
        self.signal(i, "KILL");
        let proc = PathBuf::from(format!("/proc/{pid}"));
        wait_until(&format!("{} gone", self.node(i)), || !proc.exists());
    }

    /// Starts node `i` again on its files: it rejoins the cluster, its replicas with it. (A
    /// fresh start would wipe them: a new node of the same name, outside the cluster, on which
    /// the queue's member stays `noproc`.)
    /// The node logic of scripts/node, called directly: no `cargo run` (and its build lock)
    /// between a fault and the restart.
    pub fn restart(&self, i: usize) {
        let short = self.short(i);
        let dir = nodes_dir().join(&short);
        let began = Instant::now();
        logcollect_test_support::node::Node::relaunch_in(&dir, &short, self.port_of(i)).keep();
        eprintln!(
            "{} restarted in {:.1} s",
            self.node(i),
            began.elapsed().as_secs_f64()
        );
    }

    /// A graceful stop, files kept.
    pub fn stop(&self, i: usize) {
        self.ctl(i, "rabbitmqctl", &["stop"])
            .expect("rabbitmqctl stop");
    }

    pub fn ctl(&self, i: usize, program: &str, args: &[&str]) -> Result<String, String> {
        let out = Command::new(program)
            .args(["-q", "-n", &self.node(i)])
            .args(args)
            .env("PATH", sbin_path())
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{program}: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The queue's members and their Raft state, as node `via` sees them.
    fn members(&self, via: usize) -> Result<Vec<(String, String)>, String> {
        let text = self.ctl(
            via,
            "rabbitmq-queues",
            &["quorum_status", QUEUE, "--formatter", "json"],
        )?;
        let rows: Vec<Value> = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        Ok(rows
            .iter()
            .map(|r| {
                let s = |k: &str| r[k].as_str().unwrap_or_default().to_string();
                (s("Node Name"), s("Raft State"))
            })
            .collect())
    }

    /// Waits until every node is a member of the queue, one the leader and the others
    /// followers; returns the leader's index.
    pub fn healthy_leader(&self) -> usize {
        self.leader_with(self.nodes - 1)
    }

    /// Waits until the queue has a leader (some nodes may be down); returns its index.
    pub fn leader(&self) -> usize {
        self.leader_with(0)
    }

    fn leader_with(&self, followers_needed: usize) -> usize {
        let mut last = String::new();
        let began = Instant::now();
        let deadline = began + LIMIT;
        while Instant::now() < deadline {
            let mut answer = Err(String::new());
            for via in 0..self.nodes {
                answer = self.members(via);
                if answer.is_ok() {
                    break;
                }
            }
            match answer {
                Ok(rows) => {
                    let leader = rows.iter().find(|(_, s)| s == "leader");
                    let followers = rows.iter().filter(|(_, s)| s == "follower").count();
                    if let (Some((name, _)), true) = (leader, followers >= followers_needed) {
                        if let Some(i) = (0..self.nodes).find(|&i| &self.node(i) == name) {
                            eprintln!(
                                "the queue settled in {:.1} s: {rows:?}",
                                began.elapsed().as_secs_f64()
                            );
                            return i;
                        }
                    }
                    last = format!("{rows:?}");
                }
                Err(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(250));
        }
        panic!("the queue's members did not settle: {last}");
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Resume a node a failed test left frozen, so that it can be stopped.
        for i in 0..self.nodes {
            let short = self.short(i);
            if let Ok(pid) =
                std::fs::read_to_string(nodes_dir().join(format!("{short}/{short}.pid")))
            {
                let _ = Command::new("kill").args(["-CONT", pid.trim()]).status();
            }
        }
        match self.script(&["stop"]) {
            Ok(out) if out.status.success() => {}
            Ok(out) => eprintln!(
                "scripts/cluster stop: {}",
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) => eprintln!("scripts/cluster stop: {e}"),
        }
    }
}

pub fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + LIMIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}
