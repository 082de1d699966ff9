"""The pipeline's classic -> ECS normalisation, run as a Python model built from the field lists
and maps parsed out of logstash/pipeline/logcollect.conf, on the crate's real documents."""
from __future__ import annotations

import json

import pytest

import elkmodel as m

ECS_OBJECTS = ("host", "log", "service", "event", "error", "process")
# Top-level keys an indexed document may have (the ecs encoder's, plus what Logstash adds).
ALLOWED_TOP_LEVEL = {"@timestamp", "message", "log", "process", "host", "service", "event", "ecs",
                     "labels", "spans", "fields", "error", "tags", "trace", "span", "transaction",
                     "http", "url", "client", "user_agent", "container", "kubernetes"}
LEVELS = {"TRACE", "DEBUG", "INFO", "WARN", "ERROR"}


def _types_compatible(a, b) -> bool:
    """Would Elasticsearch map both values to one field type?"""
    def kind(v):
        if isinstance(v, bool):
            return "bool"
        if isinstance(v, (int, float)):
            return "number"
        if isinstance(v, str):
            return "string"
        if isinstance(v, dict):
            return "object"
        if isinstance(v, list):
            kinds = {kind(e) for e in v}
            return kinds.pop() if len(kinds) == 1 else ("empty" if not kinds else "mixed")
        return type(v).__name__
    ka, kb = kind(a), kind(b)
    return ka == kb or "empty" in (ka, kb)


def test_classic_document_is_detected_and_ecs_is_not(sample, normalisation):
    assert normalisation.is_classic(sample["classic"])
    assert not normalisation.is_classic(sample["ecs"])


def test_ecs_document_passes_through_unchanged(sample, normalisation):
    assert normalisation.apply(sample["ecs"]) == sample["ecs"]


def test_normalised_classic_has_no_scalar_ecs_objects(sample, normalisation):
    out = normalisation.apply(sample["classic"])
    for key in ECS_OBJECTS:
        assert not isinstance(out.get(key), (str, int, float, bool, list)), f"top-level scalar {key}: {out.get(key)!r}"
    assert set(out) <= ALLOWED_TOP_LEVEL, f"unexpected top-level keys {set(out) - ALLOWED_TOP_LEVEL}"
    assert "@version" not in out and "type" not in out


def test_normalised_classic_carries_the_ecs_fields(sample, normalisation):
    classic = sample["classic"]
    out = normalisation.apply(classic)
    assert out["host"]["hostname"] == classic["host"]
    assert out["log"]["level"] in LEVELS
    expected_level = "WARN" if classic["levelname"] == "WARNING" else classic["levelname"]
    assert out["log"]["level"] == expected_level
    assert out["log"]["logger"] == classic["logger"]
    assert out["process"]["pid"] == classic["process"]
    assert out["event"]["id"] == classic["event_id"]
    if "path" in classic:
        assert out["log"]["origin"]["file"]["name"] == classic["path"]
    if "lineno" in classic:
        assert out["log"]["origin"]["file"]["line"] == classic["lineno"]
    if "thread_name" in classic:
        assert out["process"]["thread"]["name"] == classic["thread_name"]
    if "stack_trace" in classic:
        assert out["error"]["stack_trace"] == classic["stack_trace"]
    for key in normalisation.identity_keys:
        if key in classic:
            assert out["labels"][key] == classic[key]
    if "application" in classic:
        assert out["service"]["name"] == classic["application"]
    user_keys = set(classic) - set(normalisation.classic_keys) - set(normalisation.identity_keys)
    assert user_keys, "the sample carries event/span fields"
    for key in user_keys:
        assert out["fields"][key] == classic[key]


def test_normalised_classic_maps_like_the_ecs_document(sample, normalisation):
    """No mapping conflict between the two encodings in one data stream: every leaf both have is
    of the same JSON kind, and no leaf of one is an object in the other."""
    ecs = m.flatten(sample["ecs"])
    out = m.flatten(normalisation.apply(sample["classic"]))
    shared = set(ecs) & set(out)
    assert {"host.hostname", "log.level", "log.logger", "process.pid", "event.id"} <= shared
    for path in shared:
        assert _types_compatible(ecs[path], out[path]), f"{path}: ecs {ecs[path]!r} vs classic {out[path]!r}"
    for a, b in ((ecs, out), (out, ecs)):
        for path in a:
            parts = path.split(".")
            for i in range(1, len(parts)):
                prefix = ".".join(parts[:i])
                assert prefix not in b, f"{prefix} is a value in one encoding, an object in the other"


def test_same_event_in_both_encodings_normalises_to_the_same_core_fields(sample, normalisation):
    """The sample encodes one captured event twice (each encoding gets its own event.id)."""
    ecs, out = m.flatten(sample["ecs"]), m.flatten(normalisation.apply(sample["classic"]))
    for path in ("@timestamp", "message", "host.hostname", "log.level", "log.logger", "process.pid",
                 "process.thread.name", "log.origin.file.name", "log.origin.file.line",
                 "labels.project", "labels.application", "service.name", "error.stack_trace", "spans"):
        assert path in ecs, f"the sample ecs document lacks {path}"
        assert ecs[path] == out.get(path), path
    # User fields: the same names and values under fields.* in both.
    assert {k: v for k, v in ecs.items() if k.startswith("fields.")} == \
        {k: v for k, v in out.items() if k.startswith("fields.")}


@pytest.mark.parametrize("user_key", ["log", "service", "event", "error", "labels", "fields", "ecs", "data_stream"])
def test_user_fields_named_like_ecs_objects_cannot_collide(sample, normalisation, user_key):
    doc = dict(sample["classic"])
    doc[user_key] = "user value"
    out = normalisation.apply(doc)
    assert out["fields"][user_key] == "user value"
    for key in ECS_OBJECTS:
        assert not isinstance(out.get(key), str)


def test_collision_escaped_fields_stay_user_fields(sample, normalisation):
    doc = dict(sample["classic"])
    doc["field_host"] = "user host"
    out = normalisation.apply(doc)
    assert out["fields"]["field_host"] == "user host"
    assert out["host"]["hostname"] == sample["classic"]["host"]


def test_python_logstash_style_document(normalisation):
    """A minimal python-logstash record: no application, WARNING level."""
    doc = {"@timestamp": "2026-01-01T00:00:00.000Z", "@version": "1", "message": "m", "host": "h",
           "levelname": "WARNING", "logger": "app", "type": "logstash", "tags": [], "path": "/x.py",
           "lineno": 3, "process": 7, "event_id": "e-1", "extra_thing": {"a": 1}}
    out = normalisation.apply(doc, properties={"app-id": "from-app-id"})
    assert out["log"]["level"] == "WARN"
    assert out["service"]["name"] == "from-app-id"
    assert out["fields"]["extra_thing"] == {"a": 1}
    assert set(out) <= ALLOWED_TOP_LEVEL


def test_foreign_document_with_scalar_ecs_names_is_guarded(normalisation):
    doc = {"@timestamp": "2026-01-01T00:00:00Z", "message": "m", "log": "oops", "error": "bad",
           "fields": "scalar", "event": {"id": "e"}}
    out = normalisation.apply(doc)
    assert out["fields"] == {"log": "oops", "error": "bad", "fields": "scalar"}
    assert out["event"] == {"id": "e"}


def test_rename_order_is_safe(normalisation):
    """A rename into [x][...] must come after the rename of a scalar `x` (Logstash cannot set
    [process][thread][name] while `process` is still the integer pid)."""
    done = set()
    for src, dst in normalisation.rename:
        top = m.field_ref_path(dst)[0]
        later = [s for s, _ in normalisation.rename if m.field_ref_path(s) == [top] and s not in done]
        assert not later or later == [src], f"{src} -> {dst} runs before {later[0]} is moved"
        done.add(src)


def test_identity_keys_are_configurable(normalisation, compose, env_file):
    assert normalisation.identity_env == "LOGCOLLECT_IDENTITY_KEYS"
    assert env_file["LOGCOLLECT_IDENTITY_KEYS"].split(",") == normalisation.identity_keys
    assert "LOGCOLLECT_IDENTITY_KEYS" in compose["services"]["logstash"]["environment"]
    doc = {"@version": "1", "host": "h", "levelname": "INFO", "event_id": "e", "team": "t", "project": "p"}
    out = normalisation.apply(doc, identity_keys=["team"])
    assert out["labels"] == {"team": "t"} and out["fields"] == {"project": "p"}


def _with_id(doc: dict, fmt: str, event_id: str) -> dict:
    out = json.loads(json.dumps(doc))
    if fmt == "ecs":
        out["event"]["id"] = event_id
    else:
        out["event_id"] = event_id
    return out


@pytest.mark.parametrize("n", [1, 2, 7, 256])
def test_batched_message_gives_one_event_per_document(sample, normalisation, n):
    """A batch (a JSON array body) goes through the pipeline as n events, in order, each
    normalised as if it had come alone; the message's properties reach each of them."""
    docs = [_with_id(sample["ecs" if i % 2 else "classic"], "ecs" if i % 2 else "classic",
                     f"00000000-0000-7000-8000-{i:012x}") for i in range(n)]
    body = json.dumps(docs).encode()
    props = {"app-id": "sample", "content-type": "application/json"}
    events = m.pipeline_events(normalisation, body, props)
    assert len(events) == n
    assert events == [normalisation.apply(d, props) for d in docs]
    assert [m._get(e, ["event", "id"]) for e in events] == [f"00000000-0000-7000-8000-{i:012x}" for i in range(n)]
    # A single object body stays one event, the same as a one-element array.
    assert m.pipeline_events(normalisation, json.dumps(docs[0]).encode(), props) == events[:1]


def test_array_of_non_objects_is_not_split_into_events(normalisation):
    with pytest.raises(ValueError):
        m.pipeline_events(normalisation, b'[{"message": "a"}, 1]')
