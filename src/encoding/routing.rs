//! Routing keys: `logstash.<target>` by default, the Python logcollect's convention.

/// AMQP short strings (routing keys, exchange names) hold at most 255 bytes.
pub const MAX_ROUTING_KEY_BYTES: usize = 255;

/// Expands a routing-key template for one event and keeps it within 255 bytes.
///
/// Placeholders: `{target}` (the target, `::` turned into `.` so topic bindings such as
/// `logstash.billing.#` work), `{level}` (lower-case) and `{service}`: with the default
/// template, target `billing::api` gives `logstash.billing.api`.
pub fn routing_key(template: &str, target: &str, level: &str, service: &str) -> String {
    let mut key = template.to_string();
    if key.contains("{target}") {
        key = key.replace("{target}", &target.replace("::", "."));
    }
    if key.contains("{level}") {
        key = key.replace("{level}", &level.to_ascii_lowercase());
    }
    if key.contains("{service}") {
        key = key.replace("{service}", service);
    }
    if key.len() > MAX_ROUTING_KEY_BYTES {
        let mut end = MAX_ROUTING_KEY_BYTES;
        while !key.is_char_boundary(end) {
            end -= 1;
        }
        key.truncate(end);
    }
    key
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_targets_are_cut_to_255_bytes_at_a_char_boundary() {
        let target = "é".repeat(300);
        let key = routing_key("logstash.{target}", &target, "INFO", "s");
        assert!(key.len() <= 255 && key.len() >= 253, "{}", key.len());
        assert!(key.starts_with("logstash.é"));
    }

    #[test]
    fn placeholders_expand() {
        assert_eq!(
            routing_key("{service}.{level}.{target}", "a::b", "WARN", "svc"),
            "svc.warn.a.b"
        );
        assert_eq!(routing_key("fixed", "a", "INFO", "s"), "fixed");
        assert_eq!(
            routing_key("logstash.{target}", "billing::api", "INFO", "worker"),
            "logstash.billing.api"
        );
    }
}
