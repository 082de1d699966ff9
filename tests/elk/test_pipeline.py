"""Logstash: every pipeline file parses (lscl), every plugin option is a known one with a valid
value, and the settings files ask for a persisted queue and the dead letter queue."""
from __future__ import annotations

import re

import pytest
import yaml
from lscl.parser import parse_lscl

import elkmodel as m

PIPELINE_FILES = sorted(m.PIPELINE_DIR.rglob("*.conf"))


def test_there_is_a_pipeline_per_transport_sharing_one_filter_and_output_file():
    assert set(PIPELINE_FILES) == {m.SHARED_PIPELINE, *m.PIPELINE_INPUTS.values()}, \
        "every .conf is a transport's input or the shared part"
    for transport, input_file in m.PIPELINE_INPUTS.items():
        files = [p for _, p in m.pipeline_files(transport)]
        assert files == [input_file, m.SHARED_PIPELINE], (transport, files)


def _sections(path) -> set[str]:
    return {b.name for b in parse_lscl(path.read_text(encoding="utf-8"))}


def test_one_copy_of_the_filters_and_the_output():
    """Input files hold an input only; the shared file holds no input: the part both paths run
    cannot drift apart, there is one copy of it."""
    for transport, path in m.PIPELINE_INPUTS.items():
        assert _sections(path) == {"input"}, f"{path.relative_to(m.ROOT)} holds more than its input"
    assert _sections(m.SHARED_PIPELINE) == {"filter", "output"}


def _resolved(value):
    """The value Logstash sees with no variable set, for `${VAR:default}`; else as written."""
    if isinstance(value, str) and m.env_ref(value) and m.env_ref(value)[1] is not None:
        return m.resolve_default(value)
    return value


def option_problems(where: str, p) -> list[str]:
    """Every option of plugin `p` known to it, with a valid value (variables at their defaults)."""
    problems = []
    known = m.PLUGIN_OPTIONS.get((p.section, p.name))
    if known is None:
        return [f"{where}: plugin not in the checked list; add its options to elkmodel.py"]
    if p.duplicates:
        problems.append(f"{where}: option(s) set twice: {p.duplicates}")
    if p.sub_blocks:
        problems.append(f"{where}: unexpected nested blocks {[b.name for b in p.sub_blocks]}")
    allowed = known | m.COMMON_OPTIONS[p.section]
    for name, raw in p.attrs.items():
        value = _resolved(raw)
        if name not in allowed:
            problems.append(f"{where}: unknown option {name!r}")
        if name in m.BOOLEAN_OPTIONS.get((p.section, p.name), ()) and value not in ("true", "false"):
            problems.append(f"{where}: {name} => {value!r} is not true/false")
        if name in m.NUMBER_OPTIONS.get((p.section, p.name), ()) and not re.fullmatch(r"[0-9]+", str(value)):
            problems.append(f"{where}: {name} => {value!r} is not a number")
        enum = m.ENUM_OPTIONS.get((p.section, p.name, name))
        if enum is not None and value not in enum:
            problems.append(f"{where}: {name} => {value!r} not one of {sorted(enum)}")
        if name == "codec":
            if not isinstance(value, str) or value not in m.CODECS:
                problems.append(f"{where}: codec {value!r} not in {sorted(m.CODECS)}")
        if name in ("add_field", "rename", "copy", "replace", "arguments") and not isinstance(value, dict):
            problems.append(f"{where}: {name} must be a hash, is {value!r}")
        if name in ("remove_field", "silence_errors_in_log", "hosts") and not isinstance(value, list):
            problems.append(f"{where}: {name} must be an array, is {value!r}")
    if p.name == "ruby" and "code" not in p.attrs and "path" not in p.attrs:
        problems.append(f"{where}: ruby filter without code or path")
    return problems


@pytest.mark.parametrize("path", PIPELINE_FILES, ids=lambda p: str(p.relative_to(m.PIPELINE_DIR)))
def test_pipeline_file_parses_and_options_are_known(path):
    tree = parse_lscl(path.read_text(encoding="utf-8"))
    found = m.plugins(tree)
    assert found, f"{path.name}: no plugins"
    problems = [q for p in found for q in option_problems(f"{path.name}: {p.section} {p.name} (id={p.id})", p)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("transport", m.TRANSPORTS)
def test_each_assembled_pipeline_has_one_input_and_unique_ids(transport):
    found = m.plugins(m.parse_pipeline(transport))
    ids = [p.id for p in found]
    assert None not in ids, f"every plugin should carry an id (monitoring API, logs): {found}"
    assert len(set(ids)) == len(ids), f"duplicate plugin ids {sorted(i for i in ids if ids.count(i) > 1)}"
    assert [p.name for p in found if p.section == "input"] == [{"amqp": "rabbitmq", "redis": "redis"}[transport]]
    assert [p.name for p in found if p.section == "output"] == ["elasticsearch"]


def test_the_option_check_catches_a_wrong_redis_option():
    """SHOWS IT BITES: a misspelt option, a data type the input has not, a number that is not."""
    tree = parse_lscl('input { redis { id => "r" key => "k" data_type => "stream" batch_size => 10 '
                      'batch_count => "${N:many}" ssl => "${S:yes}" } }')
    [p] = m.plugins(tree)
    problems = " | ".join(option_problems("redis", p))
    for needle in ("unknown option 'batch_size'", "data_type => 'stream'", "batch_count => 'many'",
                   "ssl => 'yes'"):
        assert needle in problems, (needle, problems)


def test_rabbitmq_input_is_durable_acked_and_decodes_json(rabbitmq_input):
    i = rabbitmq_input
    assert i.get("codec") == "json"
    assert i.get("metadata_enabled") == "basic"
    assert m.as_bool(i.get("ack")) is True
    assert i.get("queue"), "a named queue (a server-named one is transient and drops events)"
    assert m.as_bool(i.get("durable")) is True
    assert m.as_bool(i.get("auto_delete", "false")) is False
    assert m.as_bool(i.get("exclusive", "false")) is False
    # The password must come from the environment, never from the file.
    ref = m.env_ref(i["password"])
    assert ref is not None and ref[1] is None, "password => \"${VAR}\" without a default"


def test_elasticsearch_output_writes_a_data_stream_with_dedup(es_output):
    o = es_output
    assert o.get("data_stream") == "true"
    assert o.get("data_stream_type") == "logs"
    assert o.get("data_stream_dataset") == "logcollect"
    namespace = m.resolve_default(o["data_stream_namespace"])
    assert m.env_ref(o["data_stream_namespace"]), "namespace comes from an environment variable"
    # ES data stream names are lower case; '-' would break the type-dataset-namespace scheme.
    for part in (o["data_stream_dataset"], namespace):
        assert re.fullmatch(r"[a-z0-9_.]+", part), part
        assert len(part) <= 100
    assert "version_conflict_engine_exception" in o.get("silence_errors_in_log", [])
    assert m.sprintf_field(o["document_id"]), "document_id is one field reference"
    for forbidden in ("index", "manage_template", "template", "template_name", "ilm_enabled",
                      "ilm_policy", "ilm_rollover_alias"):
        assert forbidden not in o, f"{forbidden} is rejected with data_stream => true"
    ref = m.env_ref(o["password"])
    assert ref is not None and ref[1] is None
    assert m.as_bool(o.get("data_stream_auto_routing", "true")) is False, "only our data stream"
    assert m.as_bool(o.get("data_stream_sync_fields", "true")) is True
    assert o.get("ecs_compatibility") == "v8", "data-stream mode wants the output in ECS mode"


def test_every_event_gets_an_id_before_the_output(pipeline_plugins):
    fallback = [p for p in pipeline_plugins if p.id == "logcollect_fallback_id"]
    assert len(fallback) == 1
    cond = fallback[0].conditions[-1]
    assert isinstance(cond, m.LsclNot) and cond.condition.names == ["event", "id"]
    assert "[event][id]" in fallback[0].attrs["code"]


def test_detection_never_reads_fields_logstash_adds(facts):
    """@version and @timestamp are on every event Logstash decodes: never a format marker."""
    code = facts.detect_code
    assert "@version" not in code and "@timestamp" not in code
    for needle in ("[@metadata][rabbitmq_properties][type]", "[@metadata][logcollect][declared_format]"):
        assert needle in code


def test_logstash_yml_persisted_queue_and_dlq():
    settings = yaml.safe_load(m.LOGSTASH_YML.read_text(encoding="utf-8"))
    assert settings["queue.type"] == "persisted"
    assert settings["dead_letter_queue.enable"] is True
    assert settings["path.data"] == "/usr/share/logstash/data"
    assert "pipeline.ecs_compatibility" not in settings, "set per pipeline, in pipelines.yml"


def test_pipelines_yml_points_at_the_pipeline_files():
    entries = yaml.safe_load(m.PIPELINES_YML.read_text(encoding="utf-8"))
    assert isinstance(entries, list) and len(entries) == 1, "one pipeline; compose picks its input"
    e = entries[0]
    assert e.get("queue.type", "persisted") == "persisted"
    assert e.get("dead_letter_queue.enable", True) is True
    # The json codec without [event][original] (docs/formats.md); the output in ECS mode.
    assert e.get("pipeline.ecs_compatibility") == "disabled"
    loaded = {p for t in m.TRANSPORTS for _, p in m.pipeline_files(t)}
    assert loaded == set(PIPELINE_FILES), "every pipeline file is run by some Logstash service"


def test_brace_expansion_and_a_mount_that_misses_a_file(compose):
    assert m.expand_braces("/p/{a,b}/*.conf") == ["/p/a/*.conf", "/p/b/*.conf"]
    assert m.expand_braces("/p/{a,b}/{x,y}") == ["/p/a/x", "/p/a/y", "/p/b/x", "/p/b/y"]
    # SHOWS IT BITES: a service that mounts no input directory loads no input.
    import copy
    broken = copy.deepcopy(compose)
    broken["services"]["logstash-redis"]["volumes"] = [
        v for v in broken["services"]["logstash-redis"]["volumes"] if "/pipeline/input" not in v]
    with pytest.raises(LookupError):
        m.pipeline_files("redis", broken)
