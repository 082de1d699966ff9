"""monitoring/alerts.yml checked offline, as `promtool check rules` would and a step further:
the YAML has Prometheus' rule-group structure, every `for` is a duration, every `expr` parses as
PromQL (promql-parser, the Rust parser's Python binding), every metric an expression names is
one that the library (src/metrics.rs) or `logcollect collect` (cli/src/collect/metrics.rs)
exports, every label it matches or groups by is one they set (or Prometheus' target labels),
and docs/metrics.md lists exactly the exported names. A misspelt metric is refused."""
from __future__ import annotations

import re
from pathlib import Path

import promql_parser
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
RULES = ROOT / "monitoring" / "alerts.yml"
LIBRARY = ROOT / "src" / "metrics.rs"
COLLECT = ROOT / "cli" / "src" / "collect" / "metrics.rs"
DOC = ROOT / "docs" / "metrics.md"

# Labels the exporters set, and those Prometheus adds to every scraped series.
EXPORTED_LABELS = {"transport", "reason", "facility", "quantile", "le"}
TARGET_LABELS = {"instance", "job"}

GROUP_KEYS = {"name", "rules", "interval", "limit"}
RULE_KEYS = {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}


def exported_names() -> set[str]:
    """Every series name the two exporters can produce: the names in their sources, and a
    histogram's `_bucket`, `_sum` and `_count` (rendered as a summary or with buckets)."""
    names: set[str] = set()
    for source in (LIBRARY, COLLECT):
        text = source.read_text()
        found = set(re.findall(r'"(logcollect_[a-z0-9_]+)"', text))
        assert found, f"no metric names found in {source}"
        names |= found
        for histogram in re.findall(r'histogram!\(\s*"(logcollect_[a-z0-9_]+)"', text):
            names |= {histogram + s for s in ("_bucket", "_sum", "_count")}
    return names


def selectors(expr) -> list:
    """The vector selectors of a parsed expression (matrix selectors' included)."""
    found = []

    def visit(node):
        if isinstance(node, promql_parser.VectorSelector):
            found.append(node)

    promql_parser.walk(expr, pre_visit=visit)
    return found


def grouping_labels(expr) -> set[str]:
    labels: set[str] = set()

    def visit(node):
        if isinstance(node, promql_parser.AggregateExpr) and node.modifier is not None:
            labels.update(node.modifier.labels)

    promql_parser.walk(expr, pre_visit=visit)
    return labels


def check_rules(doc, names: set[str]) -> list[str]:
    """Every problem of a rules document, as one line each (empty: the rules are good)."""
    problems = []
    if not isinstance(doc, dict) or set(doc) != {"groups"}:
        return ["the file must be a mapping with one key, `groups`"]
    groups = doc["groups"]
    if not isinstance(groups, list) or not groups:
        return ["`groups` must be a non-empty list"]
    group_names, alerts = set(), set()
    for group in groups:
        if not isinstance(group, dict) or set(group) - GROUP_KEYS or "name" not in group:
            problems.append(f"bad group (keys {sorted(group) if isinstance(group, dict) else group})")
            continue
        if group["name"] in group_names:
            problems.append(f"group {group['name']} twice")
        group_names.add(group["name"])
        rules = group.get("rules")
        if not isinstance(rules, list) or not rules:
            problems.append(f"group {group['name']}: `rules` must be a non-empty list")
            continue
        for rule in rules:
            where = f"{group['name']}/{rule.get('alert', '?') if isinstance(rule, dict) else '?'}"
            if not isinstance(rule, dict) or set(rule) - RULE_KEYS:
                problems.append(f"{where}: unknown keys")
                continue
            if not re.fullmatch(r"[A-Z][A-Za-z0-9]*", str(rule.get("alert", ""))):
                problems.append(f"{where}: an alerting rule needs a CamelCase `alert` name")
            if rule.get("alert") in alerts:
                problems.append(f"{where}: alert name twice")
            alerts.add(rule.get("alert"))
            if "for" in rule:
                try:
                    promql_parser.parse_duration(str(rule["for"]))
                except ValueError as e:
                    problems.append(f"{where}: bad `for` {rule['for']!r}: {e}")
            labels = rule.get("labels", {})
            if not isinstance(labels, dict) or labels.get("severity") not in ("page", "warn"):
                problems.append(f"{where}: labels.severity must be page or warn")
            annotations = rule.get("annotations", {})
            description = annotations.get("description") if isinstance(annotations, dict) else None
            if not isinstance(description, str) or not description.strip() or "\n" in description.strip():
                problems.append(f"{where}: annotations.description must be one line of what to do")
            try:
                expr = promql_parser.parse(str(rule.get("expr", "")))
            except ValueError as e:
                problems.append(f"{where}: expr does not parse: {e}")
                continue
            found = selectors(expr)
            if not found:
                problems.append(f"{where}: expr names no metric")
            for selector in found:
                if selector.name not in names:
                    problems.append(f"{where}: metric {selector.name!r} is not exported")
                for matcher in selector.matchers.matchers:
                    if matcher.name not in EXPORTED_LABELS | TARGET_LABELS:
                        problems.append(f"{where}: label {matcher.name!r} is not set")
            for label in grouping_labels(expr) - EXPORTED_LABELS - TARGET_LABELS:
                problems.append(f"{where}: groups by {label!r}, which is not set")
    return problems


@pytest.fixture(scope="module")
def names():
    return exported_names()


def test_the_rules_parse_and_name_only_exported_metrics(names):
    doc = yaml.safe_load(RULES.read_text())
    assert check_rules(doc, names) == []
    alerts = {r["alert"] for g in doc["groups"] for r in g["rules"]}
    # The failures the issue names, each covered.
    assert {
        "LogcollectEventsDropped",
        "LogcollectSpoolGrowing",
        "LogcollectDeliveryLatencyHigh",
        "LogcollectCollectorNotWriting",
        "LogcollectShipperBrokerDown",
        "LogcollectCollectorBrokerDown",
    } <= alerts


@pytest.mark.parametrize(
    "change, problem",
    [
        (("logcollect_events_dropped_total", "logcollect_event_dropped_total"), "is not exported"),
        (("[5m]))", "[5m])"), "does not parse"),
        (("by (instance, reason)", "by (instance, cause)"), "which is not set"),
        (("for: 15m", "for: soon"), "bad `for`"),
        (("severity: page", "severity: loud"), "severity"),
    ],
)
def test_a_broken_rule_is_refused(names, change, problem):
    text = RULES.read_text()
    old, new = change
    assert old in text
    problems = check_rules(yaml.safe_load(text.replace(old, new, 1)), names)
    assert any(problem in p for p in problems), problems


def test_docs_list_exactly_the_exported_metrics(names):
    documented = set(re.findall(r"^\| `(logcollect_[a-z0-9_]+)`", DOC.read_text(), re.M))
    histograms = {n for n in names if n.endswith(("_bucket", "_sum", "_count"))}
    assert documented == names - histograms
