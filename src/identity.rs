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
    pub hostname: String,
    pub pid: u32,
    /// `service.name`: explicit, else the `application` entry, else the executable name.
    pub service_name: String,
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
        Identity {
            entries,
            hostname,
            pid: std::process::id(),
            service_name,
        }
    }
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
mod fqdn_tests {
    use super::*;

    #[test]
    fn localhost_resolves_to_a_canonical_name() {
        let name = resolve_fqdn("localhost").expect("localhost resolves on any machine");
        assert!(!name.is_empty());
        assert!(!detect_hostname(true).is_empty());
    }
}
