//! The documentation of the settings agrees with their declarations (`Config::SETTINGS`): the
//! full reference's configuration table (docs/configuration.md), and the `Builder` methods' docs.
//!
//! The rule for the default column: a setting whose default is a value shows that value in
//! backticks, exactly as a file or variable would give it (durations in milliseconds); a setting
//! unset by default (no value, no entries) shows the description its declaration carries
//! (`default_doc`, e.g. "none (no spool)"). Both are [`Setting::default_doc`].

use std::collections::BTreeMap;

use logcollect::{Config, Setting};

const REFERENCE: &str = include_str!("../docs/configuration.md");
const BOOT: &str = include_str!("../src/boot.rs");

/// The reference's name for a setting: its variable without the prefix, lower case
/// (`spool__max_bytes`, `identity__<key>`).
fn readme_key(setting: &Setting) -> String {
    setting
        .variable()
        .trim_start_matches("LOGCOLLECT_")
        .to_lowercase()
}

/// The backticked words of a cell, in order: "`a`, `b`" → ["a", "b"].
fn backticked(cell: &str) -> Vec<&str> {
    cell.split('`').skip(1).step_by(2).collect()
}

/// Key → default cell of the table in the "## Configuration" section. A row may document several
/// keys (`` `backoff_min_ms`, `backoff_max_ms` ``), then its default cell holds as many
/// backticked values, in the same order.
fn configuration_table() -> Vec<(String, String)> {
    let section = REFERENCE
        .split("\n## ")
        .find(|s| s.starts_with("Configuration\n"))
        .expect("docs/configuration.md has a \"## Configuration\" section");
    let mut rows = Vec::new();
    for line in section.lines().filter(|l| l.starts_with("| `")) {
        let cells: Vec<&str> = line.trim_matches('|').split(" | ").map(str::trim).collect();
        assert!(
            cells.len() >= 3,
            "not a key | default | meaning row: {line}"
        );
        let keys = backticked(cells[0]);
        assert!(!keys.is_empty(), "no key in: {line}");
        if keys.len() == 1 {
            rows.push((keys[0].to_string(), cells[1].to_string()));
        } else {
            let defaults = backticked(cells[1]);
            let expected: Vec<String> = defaults.iter().map(|d| format!("`{d}`")).collect();
            assert_eq!(
                cells[1],
                expected.join(", "),
                "a row of several keys has one backticked default per key: {line}"
            );
            assert_eq!(keys.len(), defaults.len(), "one default per key: {line}");
            for (key, default) in keys.iter().zip(defaults) {
                rows.push((key.to_string(), format!("`{default}`")));
            }
        }
    }
    assert!(rows.len() > 10, "the configuration table was not found");
    rows
}

#[test]
fn the_configuration_reference_lists_every_setting_with_its_default() {
    let rows = configuration_table();
    let mut table: BTreeMap<&str, &str> = BTreeMap::new();
    for (key, default) in &rows {
        assert!(
            table.insert(key, default).is_none(),
            "`{key}` is in docs/configuration.md's table twice"
        );
    }
    let declared: BTreeMap<String, &Setting> = Config::SETTINGS
        .iter()
        .map(|s| (readme_key(s), s))
        .collect();
    assert_eq!(declared.len(), Config::SETTINGS.len());

    let mut problems = Vec::new();
    for (key, setting) in &declared {
        match table.get(key.as_str()) {
            None => problems.push(format!(
                "`{key}` is declared (src/config.rs) but not in docs/configuration.md's table"
            )),
            Some(default) if *default != setting.default_doc() => problems.push(format!(
                "`{key}`: docs/configuration.md says the default is {default}, the declaration {}",
                setting.default_doc()
            )),
            Some(_) => {}
        }
    }
    for key in table.keys() {
        if !declared.contains_key(*key) {
            problems.push(format!(
                "`{key}` is in docs/configuration.md's table but declares no setting (src/config.rs)"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The default column is compared as the rule says, so a changed default fails.
#[test]
fn a_literal_default_is_shown_as_its_value() {
    let c = Config::default();
    let doc = |key: &str| Config::setting(key).expect(key).default_doc();
    assert_eq!(doc("queue_capacity"), format!("`{}`", c.queue_capacity));
    assert_eq!(
        doc("confirm_timeout_ms"),
        format!("`{}`", c.confirm_timeout.as_millis())
    );
    assert_eq!(doc("exchange_type"), format!("`{}`", c.exchange_type));
    assert_eq!(doc("spool.dir"), "none (no spool)");
    assert_eq!(Config::setting("spool.dir").unwrap().default_value(), None);
}

/// Every `Builder` method that sets a setting says so on one line:
/// "Sets `key` (`VARIABLE`); default D." with D as in docs/configuration.md.
#[test]
fn the_builder_docs_name_the_key_its_variable_and_its_default() {
    let mut documented = Vec::new();
    let mut problems = Vec::new();
    for line in BOOT.lines().map(str::trim) {
        let Some(doc) = line.strip_prefix("/// ") else {
            continue;
        };
        let Some((before, default)) = doc.split_once("); default ") else {
            continue;
        };
        let words = backticked(before);
        let [.., key, variable] = words.as_slice() else {
            problems.push(format!("no `key` (`VARIABLE`) in: {line}"));
            continue;
        };
        let default = default.strip_suffix('.').unwrap_or(default);
        match Config::setting(key) {
            None => problems.push(format!("`{key}` is not a setting: {line}")),
            Some(setting) => {
                if *variable != setting.variable() {
                    problems.push(format!(
                        "`{key}`'s variable is {}: {line}",
                        setting.variable()
                    ));
                }
                if default != setting.default_doc() {
                    problems.push(format!(
                        "`{key}`'s default is {}: {line}",
                        setting.default_doc()
                    ));
                }
            }
        }
        documented.push(key.to_string());
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    for key in [
        "broker_uri",
        "exchange",
        "queue_capacity",
        "spool.dir",
        "identity",
    ] {
        assert!(
            documented.iter().any(|k| k == key),
            "the builder's method for `{key}` does not document it"
        );
    }
    let methods = BOOT
        .lines()
        .filter(|l| l.trim_start().starts_with("pub fn ") && l.contains("(mut self"))
        .count();
    assert_eq!(
        documented.len() + 1,
        methods,
        "every builder method that changes one setting documents it (`configure` changes any)"
    );
}

/// The front page stays a front page: reference material goes to docs/, cli/README.md,
/// compose/README.md and CONTRIBUTING.md.
#[test]
fn the_readme_front_page_is_at_most_300_lines() {
    let lines = include_str!("../README.md").lines().count();
    assert!(
        lines <= 300,
        "README.md has {lines} lines; move reference material to docs/"
    );
}
