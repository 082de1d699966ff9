"""The real AMQP pipeline (logstash/pipeline/amqp/input.conf + shared/filter-output.conf), run as Logstash runs it (elkmodel.LogstashModel:
the json codec and the event of ruby_filter_harness.rb, the filter section walked from the parsed
tree, mutate in its fixed order with hash options in Java HashMap order, the elasticsearch output's
routing), on documents the crate really ships; compared field by field with the shape
docs/formats.md promises. Each check is shown to fail when the conf is broken the way it was
(old detection, Ruby-inspect labels, one rename hash) or reshaped (a filter out of its condition,
filters reordered, a filter removed)."""
from __future__ import annotations

import copy
import json

import pytest
from lscl.lang import LsclAttribute, LsclBlock, LsclConditions

import elkmodel as m

# The detection the pipeline had before issue 25 (kept verbatim): every event Logstash decodes
# carries @version, so this sends every ECS document down the classic branch.
OLD_DETECT_CODE = """
      h = event.get('host')
      classic = !event.get('@version').nil? || !event.get('event_id').nil? || !event.get('levelname').nil? || h.is_a?(String)
      event.set('[@metadata][logcollect][format]', classic ? 'classic' : 'ecs')
    """
# The labels code before issue 25: a structured identity value became Ruby's inspect text.
OLD_LABELS_CODE = """
        event.get('[@metadata][logcollect][identity_keys]').to_s.split(',').map(&:strip).each do |k|
          next if k.empty? || !event.include?(k)
          v = event.remove(k)
          event.set('[labels][' + k + ']', v.to_s) unless v.nil?
        end
      """


def crate_properties(doc: dict, fmt: str) -> dict:
    """The AMQP properties the crate sets on a one-event message (docs/formats.md), as the
    rabbitmq input exposes them."""
    event_id = doc["event"]["id"] if fmt == "ecs" else doc["event_id"]
    service = doc["service"]["name"] if fmt == "ecs" else doc["application"]
    return {"app-id": service, "content-type": "application/json", "delivery-mode": 2,
            "message-id": event_id, "timestamp": 1_790_000_000, "type": fmt}


def check(model: m.LogstashModel, doc: dict, fmt: str, facts, properties: dict | None = "crate") -> list[str]:
    """Field-by-field differences between what the model indexes for `doc` (one message) and
    what formats.md promises. Empty: the check passes."""
    props = crate_properties(doc, fmt) if properties == "crate" else properties
    indexed = model.indexed(json.dumps(doc).encode(), props)
    if len(indexed) != 1:
        return [f"{len(indexed)} documents indexed for one: {indexed}"]
    expected = m.expected_indexed(doc, fmt, identity_keys=facts.identity_keys,
                                  app_id=(props or {}).get("app-id"))
    return m.differences(indexed[0], expected)


def find_block(content, plugin_id: str):
    """(list holding it, index) of the plugin block with this id, anywhere in the filter section."""
    for i, item in enumerate(content):
        if isinstance(item, LsclBlock) and any(isinstance(a, LsclAttribute) and a.name == "id" and a.content == plugin_id
                                               for a in item.content):
            return content, i
        if isinstance(item, LsclConditions):
            for _, body in item.conditions:
                found = find_block(body, plugin_id)
                if found:
                    return found
            if item.default:
                found = find_block(item.default, plugin_id)
                if found:
                    return found
    return None


def filter_section(tree):
    return next(b for b in tree if isinstance(b, LsclBlock) and b.name == "filter").content


def with_code(tree, plugin_id: str, code: str):
    tree = copy.deepcopy(tree)
    holder, i = find_block(filter_section(tree), plugin_id)
    attrs = holder[i].content
    j = next(k for k, a in enumerate(attrs) if isinstance(a, LsclAttribute) and a.name == "code")
    attrs[j] = LsclAttribute(name="code", content=code)
    return tree


# --- the crate's documents, field by field ---------------------------------------------------
@pytest.mark.parametrize("order", ["java", "written", "reversed"])
@pytest.mark.parametrize("fmt", ["ecs", "classic"])
def test_crate_documents_are_indexed_as_formats_md_promises(sample, facts, pipeline_tree, make_logstash, fmt, order):
    model = make_logstash(pipeline_tree, hash_order=order)
    assert check(model, sample[fmt], fmt, facts) == []
    expected_path = ["logcollect_detect_format", "logcollect_classic_settings"] if fmt == "classic" else \
        ["logcollect_detect_format", "logcollect_drop_version"]
    assert model.ran[:2] == expected_path, model.ran


@pytest.mark.parametrize("fmt", ["ecs", "classic"])
def test_detection_without_amqp_properties_falls_back_on_classic_only_keys(sample, facts, logstash, fmt):
    """A Redis input has no AMQP properties: the fallback must classify the crate's documents."""
    assert check(logstash, sample[fmt], fmt, facts, properties=None) == []
    event = logstash.run(json.dumps(sample[fmt]).encode(), None)[0]
    assert event["metadata"]["logcollect"]["format"] == fmt
    assert "@version" in logstash.decode(json.dumps(sample[fmt]).encode(), None)[0]["data"], \
        "the model's event adds @version as Logstash does"


def test_declared_format_and_type_property_win_over_the_fallback(sample, logstash):
    ecs = json.dumps(sample["ecs"]).encode()
    classic = json.dumps(sample["classic"]).encode()
    assert logstash.run(ecs, {"type": "ecs"})[0]["metadata"]["logcollect"]["format"] == "ecs"
    # A foreign producer's classic-looking document, declared ecs by the input: declared wins.
    doc = {"message": "m", "levelname": "INFO", "@metadata": {"logcollect": {"declared_format": "ecs"}}}
    [event] = logstash.run(json.dumps(doc).encode(), None)
    assert event["metadata"]["logcollect"]["format"] == "ecs"
    assert logstash.run(classic, {"type": "something-else"})[0]["metadata"]["logcollect"]["format"] == "classic"


def test_the_old_detection_is_caught(sample, facts, pipeline_tree, make_logstash):
    """SHOWS IT BITES: the detection the pipeline had, run with Logstash's event, classifies the
    crate's ECS document as classic, and the field-by-field check reports it."""
    old = make_logstash(with_code(pipeline_tree, "logcollect_detect_format", OLD_DETECT_CODE))
    problems = check(old, sample["ecs"], "ecs", facts)
    assert problems, "the old detection went unnoticed"
    assert old.run(json.dumps(sample["ecs"]).encode(), crate_properties(sample["ecs"], "ecs"))[0][
        "metadata"]["logcollect"]["format"] == "classic"
    assert any(p.startswith("fields.") for p in problems), problems


def test_a_batch_is_one_event_per_document_each_indexed_as_promised(sample, facts, logstash):
    docs = [sample["ecs"], sample["ecs"]]
    body = json.dumps(docs).encode()
    props = {**crate_properties(sample["ecs"], "ecs"), "message-id": "batch-1"}
    indexed = logstash.indexed(body, props)
    assert len(indexed) == 2
    for doc, out in zip(docs, indexed):
        assert m.differences(out, m.expected_indexed(doc, "ecs", identity_keys=facts.identity_keys)) == []


@pytest.mark.parametrize("user_key", ["log", "service", "event", "error", "labels", "fields", "ecs",
                                      "data_stream", "field_host", "http", "kubernetes"])
def test_classic_user_fields_named_like_ecs_objects_stay_user_fields(sample, facts, logstash, user_key):
    doc = {**sample["classic"], user_key: "user value"}
    assert check(logstash, doc, "classic", facts) == []


def test_identity_keys_are_configurable(sample, facts, pipeline_tree, make_logstash, compose, env_file):
    assert facts.identity_env == "LCSTACK_IDENTITY_KEYS"
    assert env_file["LCSTACK_IDENTITY_KEYS"].split(",") == facts.identity_keys
    assert "LCSTACK_IDENTITY_KEYS" in compose["services"]["logstash"]["environment"]
    model = make_logstash(pipeline_tree, env={"LCSTACK_IDENTITY_KEYS": "team"})
    doc = {**sample["classic"], "team": "payments"}
    [out] = model.indexed(json.dumps(doc).encode(), crate_properties(doc, "classic"))
    expected = m.expected_indexed(doc, "classic", identity_keys=["team"], app_id=doc["application"])
    assert m.differences(out, expected) == []
    assert out["labels"] == {"team": "payments"} and out["fields"]["project"] == doc["project"]


def test_python_logstash_record(facts, logstash):
    """A python-logstash record from a foreign producer: no properties, no application."""
    doc = {"@timestamp": "2026-01-01T00:00:00.000Z", "@version": "1", "message": "m", "host": "h",
           "levelname": "WARNING", "logger": "app", "type": "logstash", "tags": [], "path": "/x.py",
           "lineno": 3, "process": 7, "event_id": "e-1", "extra": {"a": [1, 2]}}
    assert check(logstash, doc, "classic", facts, properties={"app-id": "svc"}) == []
    [out] = logstash.indexed(json.dumps(doc).encode(), {"app-id": "svc"})
    assert out["log"]["level"] == "WARN" and out["service"]["name"] == "svc"


# --- the walk follows the conf: moved, reordered or removed filters fail the checks ----------
def test_a_filter_moved_out_of_its_condition_fails(sample, facts, pipeline_tree, make_logstash):
    tree = copy.deepcopy(pipeline_tree)
    section = filter_section(tree)
    holder, i = find_block(section, "logcollect_service_from_app_id")
    assert holder is not section, "the app-id copy sits under its condition"
    block = holder.pop(i)
    section.append(block)
    moved = make_logstash(tree)
    # The crate's ecs document has service.name; run unconditionally the copy overwrites it.
    doc = copy.deepcopy(sample["ecs"])
    props = {**crate_properties(doc, "ecs"), "app-id": "another-app"}
    assert check(moved, doc, "ecs", facts, properties=props)
    assert check(make_logstash(pipeline_tree), doc, "ecs", facts, properties=props) == []


def test_the_classic_block_moved_out_of_its_condition_fails(sample, facts, pipeline_tree, make_logstash):
    tree = copy.deepcopy(pipeline_tree)
    section = filter_section(tree)
    i = next(k for k, item in enumerate(section) if isinstance(item, LsclConditions))
    cond = section.pop(i)
    section[i:i] = cond.conditions[0][1]
    assert check(make_logstash(tree), sample["ecs"], "ecs", facts)


def test_the_warning_level_filter_moved_out_of_its_condition_fails(sample, facts, pipeline_tree, make_logstash):
    tree = copy.deepcopy(pipeline_tree)
    holder, i = find_block(filter_section(tree), "logcollect_classic_level")
    block = holder.pop(i)
    outer, j = find_block(filter_section(tree), "logcollect_classic_drop")
    outer.insert(j, block)
    assert sample["classic"]["levelname"] != "WARNING"
    assert check(make_logstash(tree), sample["classic"], "classic", facts)


def test_reordered_filters_fail(sample, facts, pipeline_tree, make_logstash):
    # The renames before the user-field move: log.*, event.*... would be moved under fields.
    tree = copy.deepcopy(pipeline_tree)
    holder, i = find_block(filter_section(tree), "logcollect_classic_user_fields")
    _, j = find_block(filter_section(tree), "logcollect_classic_rename")
    holder[i], holder[j] = holder[j], holder[i]
    assert check(make_logstash(tree), sample["classic"], "classic", facts)
    # Detection after the classic block: nothing is normalised.
    tree = copy.deepcopy(pipeline_tree)
    section = filter_section(tree)
    section.append(section.pop(0))
    assert check(make_logstash(tree), sample["classic"], "classic", facts)


def _scenarios(sample):
    """Documents that between them need every filter of the section: (format, document,
    properties); format "foreign" is checked against _foreign_expected."""
    warn = {**sample["classic"], "levelname": "WARNING"}
    other_app = {**crate_properties(sample["classic"], "classic"), "app-id": "not-the-application"}
    foreign = {"@timestamp": "2026-01-01T00:00:00.000Z", "message": "m", "log": "scalar",
               "data_stream": "x"}
    return [("ecs", sample["ecs"], "crate"), ("classic", sample["classic"], "crate"),
            ("classic", warn, "crate"), ("classic", sample["classic"], other_app),
            ("foreign", foreign, {"app-id": "foreign", "message-id": "f-1"})]


def _foreign_expected(doc, out):
    """formats.md for the foreign scenario: scalars under fields, service from app-id, an id."""
    return {"@timestamp": m.reprinted_timestamp(doc["@timestamp"]), "message": "m",
            "fields": {"log": "scalar", "data_stream": "x"}, "service": {"name": "foreign"},
            "event": {"id": (out.get("event") or {}).get("id")}}


def _all_pass(model, sample, facts) -> list[str]:
    problems = []
    for fmt, doc, props in _scenarios(sample):
        if fmt != "foreign":
            problems += check(model, doc, fmt, facts, properties=props)
            continue
        [out] = model.indexed(json.dumps(doc).encode(), props)
        if not isinstance((out.get("event") or {}).get("id"), str):
            problems.append("foreign document without an event.id")
        problems += m.differences(out, _foreign_expected(doc, out))
    return problems


def test_every_scenario_passes_with_the_real_conf(sample, facts, logstash):
    assert _all_pass(logstash, sample, facts) == []


def _filter_ids(tree) -> list[str]:
    return [p.id for p in m.plugins(tree) if p.section == "filter" and p.id != "logcollect_classic_settings"]


@pytest.mark.parametrize("plugin_id", _filter_ids(m.parse_pipeline("amqp")))
def test_removing_any_filter_fails_a_check(sample, facts, pipeline_tree, make_logstash, plugin_id):
    tree = copy.deepcopy(pipeline_tree)
    holder, i = find_block(filter_section(tree), plugin_id)
    holder.pop(i)
    assert _all_pass(make_logstash(tree), sample, facts), f"removing {plugin_id} went unnoticed"


def test_unmodelled_condition_is_an_error(pipeline_tree, make_logstash, sample):
    from lscl.parser import parse_lscl
    tree = parse_lscl('input { rabbitmq { codec => json } } filter { if [a] =~ /x/ { mutate { id => "x" } } } '
                      'output { elasticsearch { data_stream => "true" } }')
    with pytest.raises(m.UnsupportedConstruct):
        make_logstash(tree).run(json.dumps(sample["ecs"]).encode(), None)


# --- mutate: fixed operation order, hash entries in Java HashMap order ------------------------
def test_java_string_hash_and_hashmap_order():
    assert m.java_string_hash("") == 0
    assert m.java_string_hash("hello") == 99162322
    assert m.java_string_hash("Aa") == m.java_string_hash("BB") == 2112
    assert m.java_string_hash("polygenelubricants") == -(1 << 31)
    assert m.java_hashmap_order(["b", "a"]) == ["a", "b"]           # buckets 2 and 1
    assert m.java_hashmap_order(["BB", "Aa"]) == ["BB", "Aa"]       # one bucket: insertion order
    # 'q' (113) and 'a' (97) share bucket 1 of a 16-bucket table: insertion order ...
    assert m.java_hashmap_order(["q", "a", "b"]) == ["q", "a", "b"]
    # ... until 13 keys (> 0.75 * 16) double the table: 'q' moves to bucket 17, after 'a'..'l'.
    keys = ["q"] + [chr(c) for c in range(ord("a"), ord("l") + 1)]
    assert m.java_hashmap_order(keys) == keys[1:] + ["q"]


def test_one_rename_hash_with_process_and_thread_name_is_order_dependent(sample, facts, pipeline_tree, make_logstash):
    """Why `process` has a mutate of its own: in one hash with thread_name, a table order that
    runs thread_name first makes Logstash fail the whole block (_mutate_error, nothing renamed)."""
    tree = copy.deepcopy(pipeline_tree)
    holder, i = find_block(filter_section(tree), "logcollect_classic_process")
    holder.pop(i)
    _, j = find_block(filter_section(tree), "logcollect_classic_rename")
    rename = next(a for a in holder[j].content if isinstance(a, LsclAttribute) and a.name == "rename")
    rename.content = {"thread_name": "[process][thread][name]", "process": "[process][pid]",
                      **{k: v for k, v in rename.content.items() if k != "thread_name"}}
    results = {order: check(make_logstash(tree, hash_order=order), sample["classic"], "classic", facts)
               for order in ("java", "written", "reversed")}
    # Java's table of 64 buckets happens to put `process` first (the luck the conf relied on);
    # the order written here, thread_name first, fails the block.
    assert results["java"] == [], results["java"]
    assert results["written"], "thread_name before process went unnoticed"
    assert any(p.startswith("tags") for p in results["written"]), results["written"]


def test_mutate_operations_run_in_the_plugins_order_not_the_written_one(make_logstash):
    from lscl.parser import parse_lscl
    # copy is written first but runs after rename (mutate.rb `filter`).
    tree = parse_lscl('input { rabbitmq { codec => json } } filter { mutate { id => "m" '
                      'copy => { "a" => "b" } rename => { "a" => "c" } } } '
                      'output { elasticsearch { data_stream => "true" } }')
    [event] = make_logstash(tree).run(b'{"a": 1}', None)
    assert event["data"].get("c") == 1 and "b" not in event["data"]


# --- labels, ids, routing, bodies Logstash cannot split -------------------------------------
def test_structured_identity_values_become_json_labels(sample, facts, pipeline_tree, logstash, make_logstash):
    doc = {**sample["classic"], "project": {"team": "payments", "ids": [1, 2]}}
    assert check(logstash, doc, "classic", facts) == []
    [out] = logstash.indexed(json.dumps(doc).encode(), crate_properties(doc, "classic"))
    assert json.loads(out["labels"]["project"]) == {"team": "payments", "ids": [1, 2]}
    old = make_logstash(with_code(pipeline_tree, "logcollect_classic_labels", OLD_LABELS_CODE))
    problems = check(old, doc, "classic", facts)
    assert any(p.startswith("labels.project") and "=>" in p for p in problems), problems


def test_fallback_id_is_stable_across_redeliveries_and_distinct_within_a_batch(logstash):
    docs = [{"@timestamp": "2026-01-01T00:00:00Z", "message": "a"},
            {"@timestamp": "2026-01-01T00:00:00Z", "message": "b"}]
    body = json.dumps(docs).encode()
    first = logstash.indexed(body, {"message-id": "m-1"})
    again = logstash.indexed(body, {"message-id": "m-1", "redeliver": True})
    other = logstash.indexed(body, {"message-id": "m-2"})
    ids = [d["event"]["id"] for d in first]
    assert ids == [d["event"]["id"] for d in again], "a redelivery gets the same ids"
    assert len(set(ids)) == 2, "the documents of one message get different ids"
    assert set(ids).isdisjoint(d["event"]["id"] for d in other)
    assert all(logstash.document_id({"data": d, "metadata": {}}) == d["event"]["id"] for d in first)
    # Unparsable @timestamp: Logstash's time is left out of the digest.
    bad = json.dumps({"@timestamp": "yesterday", "message": "c"}).encode()
    a, b = logstash.indexed(bad, {"message-id": "m-3"}), logstash.indexed(bad, {"message-id": "m-3"})
    assert a[0]["event"]["id"] == b[0]["event"]["id"]
    assert a[0]["_@timestamp"] == "yesterday" and "_timestampparsefailure" in a[0]["tags"]


def test_events_with_data_stream_fields_stay_in_our_stream(logstash, make_logstash, pipeline_tree):
    doc = {"@timestamp": "2026-01-01T00:00:00Z", "message": "m", "event": {"id": "e-1"},
           "data_stream": {"type": "logs", "dataset": "other", "namespace": "prod"}}
    [event] = logstash.run(json.dumps(doc).encode(), {"message-id": "x"})
    action, stream, indexed = logstash.index_request(event)
    assert (action, stream) == ("create", logstash.own_stream())
    assert indexed["data_stream"] == {"type": "logs", "dataset": "logcollect", "namespace": "default"}
    # The check bites: the output as it was (auto routing on by default) sends it elsewhere.
    tree = copy.deepcopy(pipeline_tree)
    out = next(b for b in tree if isinstance(b, LsclBlock) and b.name == "output").content[0]
    out.content = [a for a in out.content if not (isinstance(a, LsclAttribute) and a.name == "data_stream_auto_routing")]
    routed = make_logstash(tree)
    assert routed.index_request(event)[1] == "logs-other-prod"
    with pytest.raises(AssertionError):
        routed.indexed(json.dumps(doc).encode(), {"message-id": "x"})


@pytest.mark.parametrize("body", [b'[{"message": "ok"}, 1]', b'[{"message": "ok"}, "x"]', b'"just a string"',
                                  b'42', b'{"message": "cut'], ids=["array-int", "array-str", "string", "number", "broken"])
def test_a_body_logstash_cannot_split_is_one_jsonparsefailure_event(logstash, body):
    indexed = logstash.indexed(body, {"message-id": "m-x", "type": "ecs"})
    assert len(indexed) == 1, "the valid elements are not events of their own"
    [doc] = indexed
    assert doc["message"] == body.decode()
    assert doc["tags"] == ["_jsonparsefailure"]
    assert isinstance(doc["event"]["id"], str) and "@version" not in doc


# --- the event model itself (org.logstash.Event where a filter can tell) -----------------------
EVENT_PROBE = """
  r = {}
  r['version'] = event.get('@version')
  ts = event.get('@timestamp')
  r['ts_class'] = ts.class.name
  r['ts'] = ts.to_iso8601
  r['ts_s'] = ts.to_s
  r['has_metadata_in_hash'] = event.to_hash.key?('@metadata')
  copy = event.get('[a]')
  copy['b'] = 'changed'
  r['get_is_a_copy'] = event.get('[a][b]')
  r['include_a_b'] = event.include?('[a][b]')
  r['include_a_x'] = event.include?('[a][x]')
  begin
    event.set('[s][t]', 1)
    r['set_through_scalar'] = 'allowed'
  rescue => e
    r['set_through_scalar'] = e.class.name
  end
  r['removed'] = event.remove('[a][b]')
  r['after_remove'] = event.include?('[a][b]')
  event.tag('x'); event.tag('x')
  r['tags'] = event.get('tags')
  event.set('[@metadata][probe]', r)
"""


def _probe(logstash, doc):
    [event] = logstash.decode(json.dumps(doc).encode(), None)
    [out] = logstash._harness({"op": "filter", "id": "probe", "init": None, "code": EVENT_PROBE, "event": event})
    return event, out["metadata"]["probe"]


def test_event_model_behaves_like_logstash(logstash):
    event, r = _probe(logstash, {"@timestamp": "2026-01-01T10:00:00.120+02:00", "a": {"b": "v"}, "s": "scalar",
                                 "@metadata": {"k": 1}})
    assert event["data"]["@version"] == "1" and r["version"] == "1"
    assert event["metadata"] == {"k": 1} and "@metadata" not in event["data"]
    assert r["ts_class"] == "LogStash::Timestamp" and r["ts"] == r["ts_s"] == "2026-01-01T08:00:00.120Z"
    assert r["has_metadata_in_hash"] is False
    assert r["get_is_a_copy"] == "v"
    assert (r["include_a_b"], r["include_a_x"]) == (True, False)
    assert r["set_through_scalar"] == "RuntimeError"
    assert (r["removed"], r["after_remove"]) == ("v", False)
    assert r["tags"] == ["x"]


def test_event_model_timestamps(logstash):
    [kept] = logstash.decode(b'{"@version": "2", "@timestamp": "2026-01-01T00:00:00.000Z"}', None)
    assert kept["data"]["@version"] == "2", "an existing @version is kept"
    assert kept["data"]["@timestamp"] == "2026-01-01T00:00:00Z"
    [bad] = logstash.decode(b'{"@timestamp": "not a time", "tags": ["t"]}', None)
    assert bad["data"]["tags"] == ["t", "_timestampparsefailure"]
    assert bad["data"]["_@timestamp"] == "not a time"
    assert m.reprinted_timestamp(bad["data"]["@timestamp"])  # now, as a valid timestamp
    [num] = logstash.decode(b'{"@timestamp": 12}', None)
    assert num["data"]["_@timestamp"] == 12 and "_timestampparsefailure" in num["data"]["tags"]
    [none] = logstash.decode(b'{"message": "m"}', None)
    assert "tags" not in none["data"] and m.reprinted_timestamp(none["data"]["@timestamp"])


def test_codec_ecs_mode_would_double_documents_and_break_scalar_event_fields(sample, pipeline_tree, make_logstash):
    """Why pipelines.yml disables ECS compatibility (codec-json 3.1): in v8 mode a one-event
    body gets [event][original]; a classic document whose user field `event` is a scalar then
    becomes one _jsonparsefailure event (elastic/logstash#15167)."""
    assert m.effective_settings()["pipeline.ecs_compatibility"] == "disabled"
    v8 = make_logstash(pipeline_tree, settings={**m.effective_settings(), "pipeline.ecs_compatibility": "v8"})
    body = json.dumps(sample["ecs"]).encode()
    [event] = v8.decode(body, None)
    assert event["data"]["event"]["original"] == body.decode()
    scalar_event = json.dumps({**sample["classic"], "event": "login"}).encode()
    [broken] = v8.decode(scalar_event, None)
    assert broken["data"]["tags"] == ["_jsonparsefailure"] and broken["data"]["message"] == scalar_event.decode()
    # Two events in one body: no [event][original] (batching decides, in ECS mode).
    assert all("original" not in e["data"]["event"] for e in v8.decode(json.dumps([sample["ecs"]] * 2).encode(), None))
    disabled = make_logstash(pipeline_tree)
    [ok] = disabled.decode(scalar_event, None)
    assert ok["data"]["event"] == "login"


# --- both encodings in one data stream ------------------------------------------------------
def _kind(v) -> str:
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, list):
        kinds = {_kind(e) for e in v}
        return kinds.pop() if len(kinds) == 1 else ("empty" if not kinds else "mixed")
    return type(v).__name__


def test_both_encodings_index_without_mapping_conflicts(sample, logstash):
    """Every leaf both have is of one JSON kind, and no leaf of one is an object in the other."""
    ecs, classic = (m.flatten(logstash.indexed(json.dumps(sample[f]).encode(), crate_properties(sample[f], f))[0])
                    for f in ("ecs", "classic"))
    shared = set(ecs) & set(classic)
    assert {"host.hostname", "log.level", "log.logger", "process.pid", "event.id"} <= shared
    for path in shared:
        assert "empty" in (_kind(ecs[path]), _kind(classic[path])) or _kind(ecs[path]) == _kind(classic[path]), path
    for a, b in ((ecs, classic), (classic, ecs)):
        for path in a:
            parts = path.split(".")
            for i in range(1, len(parts)):
                assert ".".join(parts[:i]) not in b, f"{'.'.join(parts[:i])} is a value in one, an object in the other"


def test_one_event_in_both_encodings_indexes_the_same_core_fields(sample, logstash):
    """The sample encodes one captured event twice (each encoding with its own event.id)."""
    ecs, classic = (m.flatten(logstash.indexed(json.dumps(sample[f]).encode(), crate_properties(sample[f], f))[0])
                    for f in ("ecs", "classic"))
    for path in ("@timestamp", "message", "host.hostname", "log.level", "log.logger", "process.pid",
                 "process.thread.name", "log.origin.file.name", "log.origin.file.line", "labels.project",
                 "labels.application", "service.name", "error.stack_trace", "spans", "event.dataset",
                 "trace.id", "span.id", "transaction.id"):
        assert path in ecs, f"the sample ecs document lacks {path}"
        assert ecs[path] == classic.get(path), path
    assert {k: v for k, v in ecs.items() if k.startswith("fields.")} == \
        {k: v for k, v in classic.items() if k.startswith("fields.")}
