//! The activity identity: what produced an event (project, application, host, PID).

use std::collections::BTreeMap;

/// Who is logging: the activity identity entries plus host, PID and service name.
///
/// Every document carries it: in `ecs` as `labels.*`, `host.hostname`, `process.pid` and
/// `service.name`; in `classic` as top-level keys.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Activity identity entries such as `project=billing`, `application=worker`.
    pub entries: BTreeMap<String, String>,
    /// `host.hostname`.
    pub hostname: String,
    /// `process.pid`.
    pub pid: u32,
    /// `service.name`: explicit, else the `application` entry, else the executable name.
    pub service_name: String,
    /// `service.version`, when set.
    pub service_version: Option<String>,
    /// `service.environment` (`production`, `staging`…), when set.
    pub service_environment: Option<String>,
    /// `event.dataset`; `None` means the service name.
    pub event_dataset: Option<String>,
    /// `container.id`: the 64-hex id of the container this process runs in, when detected.
    pub container_id: Option<String>,
    /// The pod, namespace and node when running in Kubernetes (downward-API variables).
    pub kubernetes: Option<Kubernetes>,
}

/// Where in Kubernetes the process runs, from the downward-API environment variables.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub struct Kubernetes {
    /// `POD_NAME` (or `MY_POD_NAME`), else `HOSTNAME` (a pod's default host name is its name).
    pub pod_name: Option<String>,
    /// `POD_NAMESPACE` (or `MY_POD_NAMESPACE`), else the service account's namespace file.
    pub namespace: Option<String>,
    /// `NODE_NAME` (or `MY_NODE_NAME`).
    pub node_name: Option<String>,
}

impl Identity {
    /// Builds the identity of this process. `hostname` overrides the detected one; `fqdn` asks
    /// for the fully qualified name (falls back to the short name when it cannot be resolved).
    pub fn detect(
        entries: BTreeMap<String, String>,
        hostname: Option<String>,
        fqdn: bool,
        service_name: Option<String>,
    ) -> Identity {
        let hostname = hostname.unwrap_or_else(|| detect_hostname(fqdn));
        let service_name = service_name
            .or_else(|| entries.get("application").cloned())
            .unwrap_or_else(executable_name);
        let env = |name: &str| std::env::var(name).ok();
        Identity {
            entries,
            hostname,
            pid: std::process::id(),
            service_name,
            service_version: None,
            service_environment: None,
            event_dataset: None,
            container_id: detect_container_id(),
            kubernetes: detect_kubernetes(env, || {
                std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
                    .ok()
            }),
        }
    }

    /// Sets `service.version`, `service.environment` and `event.dataset` (`None`: unset; the
    /// dataset then defaults to the service name).
    pub fn with_service(
        mut self,
        version: Option<String>,
        environment: Option<String>,
        dataset: Option<String>,
    ) -> Identity {
        self.service_version = version.filter(|v| !v.is_empty());
        self.service_environment = environment.filter(|v| !v.is_empty());
        self.event_dataset = dataset.filter(|v| !v.is_empty());
        self
    }

    /// `event.dataset`: the one set, else the service name.
    pub fn dataset(&self) -> &str {
        self.event_dataset.as_deref().unwrap_or(&self.service_name)
    }
}

/// The container id, from `/proc/self/cgroup` (cgroup v1 paths, or v2 without a cgroup
/// namespace) or, when that says nothing (`0::/`), `/proc/self/mountinfo` (Docker's and
/// containerd's bind mounts). `None` outside a container.
fn detect_container_id() -> Option<String> {
    let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
    container_id_from_cgroup(&read("/proc/self/cgroup"))
        .or_else(|| container_id_from_mountinfo(&read("/proc/self/mountinfo")))
}

/// A run of exactly 64 hex digits in `text`, the first one found.
fn hex64_in(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut start = None;
    for i in 0..=bytes.len() {
        let hex = i < bytes.len() && bytes[i].is_ascii_hexdigit();
        match (hex, start) {
            (true, None) => start = Some(i),
            (false, Some(s)) => {
                if i - s == 64 {
                    return Some(text[s..i].to_ascii_lowercase());
                }
                start = None;
            }
            _ => {}
        }
    }
    None
}

/// cgroup lines are `id:controllers:/path`; the container id is in the path's last segment
/// (`docker-<id>.scope`, `/docker/<id>`, kubepods paths…).
fn container_id_from_cgroup(cgroup: &str) -> Option<String> {
    cgroup.lines().find_map(|line| {
        let path = line.splitn(3, ':').nth(2)?;
        let last = path.rsplit('/').find(|s| !s.is_empty())?;
        hex64_in(last)
    })
}

/// mountinfo lines of a container's bind mounts name its id: `/containers/<id>/`,
/// `cri-containerd:<id>`, `/crio-<id>`.
fn container_id_from_mountinfo(mountinfo: &str) -> Option<String> {
    mountinfo.lines().find_map(|line| {
        for marker in ["/containers/", "cri-containerd:", "/crio-"] {
            if let Some(at) = line.find(marker) {
                if let Some(id) = hex64_in(&line[at + marker.len()..]).filter(|id| {
                    line[at + marker.len()..]
                        .to_ascii_lowercase()
                        .starts_with(id.as_str())
                }) {
                    return Some(id);
                }
            }
        }
        None
    })
}

/// The pod, namespace and node, when in a pod (`KUBERNETES_SERVICE_HOST` is set in every
/// pod) or when the downward-API variables are set.
fn detect_kubernetes(
    env: impl Fn(&str) -> Option<String>,
    namespace_file: impl FnOnce() -> Option<String>,
) -> Option<Kubernetes> {
    let first = |names: &[&str]| {
        names.iter().find_map(|n| {
            env(n)
                .map(|v| v.trim().to_string())
                .filter(|v| !v.is_empty())
        })
    };
    let in_pod = env("KUBERNETES_SERVICE_HOST").is_some_and(|v| !v.is_empty());
    let mut k8s = Kubernetes {
        pod_name: first(&["POD_NAME", "MY_POD_NAME", "KUBERNETES_POD_NAME"]),
        namespace: first(&["POD_NAMESPACE", "MY_POD_NAMESPACE", "KUBERNETES_NAMESPACE"]),
        node_name: first(&["NODE_NAME", "MY_NODE_NAME", "KUBERNETES_NODE_NAME"]),
    };
    if !in_pod && k8s == Kubernetes::default() {
        return None;
    }
    if in_pod {
        if k8s.pod_name.is_none() {
            k8s.pod_name = first(&["HOSTNAME"]);
        }
        if k8s.namespace.is_none() {
            k8s.namespace = namespace_file()
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty());
        }
    }
    Some(k8s)
}

fn detect_hostname(fqdn: bool) -> String {
    let short = hostname::get()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_else(|_| "unknown".to_string());
    if fqdn {
        resolve_fqdn(&short).unwrap_or(short)
    } else {
        short
    }
}

/// The canonical name of `host` as the resolver sees it (what `hostname -f` prints).
fn resolve_fqdn(host: &str) -> Option<String> {
    let hints = dns_lookup::AddrInfoHints {
        flags: libc::AI_CANONNAME,
        address: 0,
        socktype: libc::SOCK_STREAM,
        protocol: 0,
    };
    dns_lookup::getaddrinfo(Some(host), None, Some(hints))
        .ok()?
        .filter_map(Result::ok)
        .find_map(|info| info.canonname)
        .filter(|name| !name.is_empty())
}

fn executable_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|p| p.file_stem().map(|s| s.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "unknown".to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_name_prefers_explicit_then_application_then_executable() {
        let mut entries = BTreeMap::new();
        entries.insert("application".to_string(), "worker".to_string());
        let id = Identity::detect(entries.clone(), Some("h".into()), false, Some("svc".into()));
        assert_eq!(id.service_name, "svc");
        let id = Identity::detect(entries, Some("h".into()), false, None);
        assert_eq!(id.service_name, "worker");
        let id = Identity::detect(BTreeMap::new(), Some("h".into()), false, None);
        assert_eq!(id.service_name, executable_name());
        assert_eq!(id.pid, std::process::id());
        assert_eq!(id.hostname, "h");
    }
}

#[cfg(test)]
mod runtime_tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn container_id_from_cgroup_v1_paths() {
        let docker = format!("12:memory:/docker/{ID}\n11:cpu:/docker/{ID}");
        assert_eq!(container_id_from_cgroup(&docker).as_deref(), Some(ID));
        let systemd = format!("1:name=systemd:/system.slice/docker-{ID}.scope");
        assert_eq!(container_id_from_cgroup(&systemd).as_deref(), Some(ID));
        let k8s = format!("4:pids:/kubepods/besteffort/pod1234/{ID}");
        assert_eq!(container_id_from_cgroup(&k8s).as_deref(), Some(ID));
        assert_eq!(container_id_from_cgroup("0::/"), None);
        assert_eq!(
            container_id_from_cgroup("0::/user.slice/session-1.scope"),
            None
        );
        assert_eq!(container_id_from_cgroup(""), None);
    }

    #[test]
    fn container_id_from_mountinfo_bind_mounts() {
        let docker = format!(
            "612 590 254:1 /var/lib/docker/containers/{ID}/hostname /etc/hostname rw - ext4 /dev/vda1 rw"
        );
        assert_eq!(container_id_from_mountinfo(&docker).as_deref(), Some(ID));
        let crio = format!("1 2 0:1 / /x rw - overlay /run/crio-{ID} rw");
        assert_eq!(container_id_from_mountinfo(&crio).as_deref(), Some(ID));
        assert_eq!(
            container_id_from_mountinfo("25 1 254:1 / / rw - ext4 /dev/vda1 rw"),
            None
        );
    }

    #[test]
    fn kubernetes_from_downward_api_variables() {
        let vars = |pairs: &'static [(&'static str, &'static str)]| {
            move |name: &str| {
                pairs
                    .iter()
                    .find(|(k, _)| *k == name)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(detect_kubernetes(vars(&[]), || None), None);
        let k = detect_kubernetes(
            vars(&[
                ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
                ("POD_NAME", "web-7d4b9-x2x"),
                ("POD_NAMESPACE", "shop"),
                ("NODE_NAME", "node-3"),
            ]),
            || None,
        )
        .unwrap();
        assert_eq!(k.pod_name.as_deref(), Some("web-7d4b9-x2x"));
        assert_eq!(k.namespace.as_deref(), Some("shop"));
        assert_eq!(k.node_name.as_deref(), Some("node-3"));
        let k = detect_kubernetes(
            vars(&[
                ("KUBERNETES_SERVICE_HOST", "10.0.0.1"),
                ("HOSTNAME", "pod-a"),
            ]),
            || Some("default\n".into()),
        )
        .unwrap();
        assert_eq!(k.pod_name.as_deref(), Some("pod-a"));
        assert_eq!(k.namespace.as_deref(), Some("default"));
        assert_eq!(k.node_name, None);
    }
}

#[cfg(test)]
mod fqdn_tests {
    use super::*;

    #[test]
    fn localhost_resolves_to_a_canonical_name() {
        let name = resolve_fqdn("localhost").expect("localhost resolves on any machine");
        assert!(!name.is_empty());
        assert!(!detect_hostname(true).is_empty());
    }
}
