"""The pipeline's ruby filters executed for real (Ruby, with a stand-in for the Logstash Event
API: ruby_filter_harness.rb), inside the model of the filter section, on the crate's real
documents and on hostile ones; the result must equal the Python rendering the other checks use."""
from __future__ import annotations

import re
import shutil

import pytest

import elkmodel as m


@pytest.fixture(scope="session")
def ruby_runner(pipeline_tree):
    ruby = shutil.which("ruby")
    if not ruby:
        pytest.fail("ruby is needed to execute the pipeline's ruby filters (apt-get install ruby)")
    return m.RubyRunner(pipeline_tree, ruby)


def scenarios(sample):
    classic, ecs = sample["classic"], sample["ecs"]
    out = [("real ecs", ecs, {}), ("real classic", classic, {"app-id": "worker"})]
    for key in ("log", "service", "event", "error", "labels", "fields", "ecs", "field_host"):
        out.append((f"classic with user field {key}", {**classic, key: "user value"}, {}))
    out.append(("python-logstash record", {
        "@timestamp": "2026-01-01T00:00:00.000Z", "@version": "1", "message": "m", "host": "h",
        "levelname": "WARNING", "logger": "app", "type": "logstash", "tags": [], "path": "/x.py",
        "lineno": 3, "process": 7, "event_id": "e-1", "extra": {"a": [1, 2]}}, {"app-id": "svc"}))
    out.append(("foreign document", {"message": "m", "log": "x", "error": 1, "fields": "s",
                                     "event": {"id": "e"}}, {}))
    out.append(("ecs without service", {k: v for k, v in ecs.items() if k != "service"}, {"app-id": "a"}))
    return out


def test_every_ruby_filter_runs(ruby_runner):
    assert set(ruby_runner.filters) >= {"logcollect_detect_format", "logcollect_classic_user_fields",
                                        "logcollect_classic_labels", "logcollect_guard_ecs_objects",
                                        "logcollect_fallback_id"}
    meta = {"logcollect": {"classic_keys": "", "identity_keys": ""}}
    for plugin_id in ruby_runner.filters:
        ruby_runner(plugin_id, {"message": "x"}, dict(meta))


def test_fallback_id(ruby_runner):
    event, _ = ruby_runner("logcollect_fallback_id", {"message": "x"}, {})
    assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", event["event"]["id"])


def test_ruby_filters_do_what_the_model_says(sample, normalisation, ruby_runner):
    for name, doc, props in scenarios(sample):
        expected = normalisation.apply(doc, properties=props)
        actual = normalisation.apply(doc, properties=props, ruby=ruby_runner)
        assert actual == expected, f"{name}: ruby {actual} != model {expected}"


def test_ruby_filters_with_other_identity_keys(sample, normalisation, ruby_runner):
    doc = {**sample["classic"], "team": "payments"}
    keys = ["team", "project"]
    actual = normalisation.apply(doc, identity_keys=keys, ruby=ruby_runner)
    assert actual == normalisation.apply(doc, identity_keys=keys)
    assert actual["labels"]["team"] == "payments"
    assert "application" in actual["fields"]


def test_real_documents_through_the_real_ruby_code(sample, normalisation, ruby_runner):
    out = normalisation.apply(sample["classic"], ruby=ruby_runner)
    for key in ("host", "log", "service", "event", "error", "process"):
        assert not isinstance(out.get(key), (str, int, float, bool, list)), key
    assert out["event"]["id"] == sample["classic"]["event_id"]
    assert normalisation.apply(sample["ecs"], ruby=ruby_runner) == sample["ecs"]
