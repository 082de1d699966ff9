"""The Redis pipeline (logstash/pipeline/redis/input.conf + shared/filter-output.conf), offline:
the redis input reads the list the crate pushes to (key, data type, batches, codec), its
connection settings match the compose stack, and the shared filters, run as Logstash runs them
on the crate's real documents arriving as list values (json codec on each value, no AMQP
properties), index them as docs/formats.md promises, field by field. Each check is shown to fail
when the input is broken (another key, the plain codec)."""
from __future__ import annotations

import copy
import json
import re

import pytest
from lscl.lang import LsclAttribute, LsclBlock

import elkmodel as m


def with_input_option(tree, name: str, value):
    """A copy of `tree` whose input has option `name` set to `value` (None: removed)."""
    tree = copy.deepcopy(tree)
    block = next(b for b in tree if isinstance(b, LsclBlock) and b.name == "input").content[0]
    block.content = [a for a in block.content if not (isinstance(a, LsclAttribute) and a.name == name)]
    if value is not None:
        block.content.append(LsclAttribute(name=name, content=value))
    return tree


def input_attrs(tree) -> dict:
    [p] = [p for p in m.plugins(tree) if p.section == "input"]
    return p.attrs


def redis_check(model: m.LogstashModel, doc: dict, fmt: str, facts) -> list[str]:
    """Field-by-field differences between what the model indexes for `doc` pushed as one list
    value and what formats.md promises (no app-id: a list value has no properties)."""
    indexed = model.indexed(json.dumps(doc).encode(), None)
    if len(indexed) != 1:
        return [f"{len(indexed)} documents indexed for one list value: {indexed}"]
    expected = m.expected_indexed(doc, fmt, identity_keys=facts.identity_keys)
    return m.differences(indexed[0], expected)


def key_problems(attrs: dict, compose: dict, env_file: dict, crate_default: str) -> list[str]:
    """Whether the redis input reads the list the crate and the stack push to."""
    problems = []
    key = attrs.get("key", "")
    ref = m.env_ref(key)
    if ref is None or ref[0] != "LCSTACK_REDIS_KEY":
        problems.append(f"key => {key!r}: not ${{LCSTACK_REDIS_KEY:...}} (compose sets the list name there)")
    default = m.resolve_default(key) if ref and ref[1] is not None else key
    if default != crate_default:
        problems.append(f"key defaults to {default!r}; the crate pushes to {crate_default!r} by default")
    services = compose["services"]
    logstash_key = services["logstash-redis"]["environment"].get("LCSTACK_REDIS_KEY")
    demo_key = services["demo-redis"]["environment"].get("LOGCOLLECT_REDIS__KEY")
    if logstash_key is None or logstash_key != demo_key:
        problems.append(f"logstash-redis reads {logstash_key!r}, demo-redis pushes to {demo_key!r}")
    if env_file.get("LCSTACK_REDIS_KEY") != crate_default:
        problems.append(f".env LCSTACK_REDIS_KEY={env_file.get('LCSTACK_REDIS_KEY')!r}, not the crate's default")
    return problems


@pytest.fixture(scope="session")
def crate_redis_key(crate_defaults):
    # Issue 20's contract until sample_documents reports the crate's own default.
    return crate_defaults.get("redis_key", m.CRATE_REDIS_KEY_DEFAULT)


# --- the input --------------------------------------------------------------------------------
def test_redis_input_reads_the_crates_list_in_batches_as_json(redis_input, compose, env_file, crate_redis_key):
    i = redis_input
    assert i["data_type"] == "list", "the crate pushes to a list (a stream has no Logstash input)"
    assert i.get("codec", "json") == "json", "each value is one JSON document"
    assert int(i["batch_count"]) > 1, "read in batches (one EVAL per batch_count values)"
    assert int(i.get("threads", "1")) == 1, "one reader keeps the order of the list"
    assert key_problems(i, compose, env_file, crate_redis_key) == []
    ref = m.env_ref(i["password"])
    assert ref == ("LCSTACK_REDIS_PASSWORD", None), "password => \"${VAR}\" without a default"
    # No declared format: one list may carry both encodings (docs/formats.md, "The Redis path").
    assert "add_field" not in i


def test_a_wrong_key_is_caught(redis_pipeline_tree, compose, env_file, crate_redis_key):
    """SHOWS IT BITES: the input reading another list, or the stack's two sides disagreeing."""
    for key in ("logcollect", "${LCSTACK_REDIS_KEY:logcollect}", "${OTHER_KEY:logstash}"):
        attrs = input_attrs(with_input_option(redis_pipeline_tree, "key", key))
        assert key_problems(attrs, compose, env_file, crate_redis_key), key
    broken = copy.deepcopy(compose)
    broken["services"]["demo-redis"]["environment"]["LOGCOLLECT_REDIS__KEY"] = "logs"
    assert key_problems(input_attrs(redis_pipeline_tree), broken, env_file, crate_redis_key)


def test_redis_connection_settings_match_the_stack(redis_input, compose, env_file):
    services = compose["services"]
    env = services["logstash-redis"]["environment"]
    host = m.resolve_default(redis_input["host"])
    assert host == "redis" and env["LCSTACK_REDIS_HOST"] == "redis" and "redis" in services
    assert m.resolve_default(redis_input["port"]) == "6379"
    assert m.env_ref(redis_input["host"])[0] == "LCSTACK_REDIS_HOST"
    # One password, the server's requirepass: the same .env variable on all three.
    assert env["LCSTACK_REDIS_PASSWORD"] == "${REDIS_PASSWORD}"
    assert services["redis"]["environment"]["REDIS_PASSWORD"] == "${REDIS_PASSWORD}"
    uri = services["demo-redis"]["environment"]["LOGCOLLECT_REDIS__URI"]
    assert re.fullmatch(r"redis://:\$\{REDIS_PASSWORD\}@redis:6379/" + m.resolve_default(redis_input["db"]), uri), uri
    assert services["demo-redis"]["environment"]["LOGCOLLECT_TRANSPORT"] == "redis"
    assert services["demo-redis"]["environment"]["LOGCOLLECT_REDIS__DATA_TYPE"] == "list"


# --- the crate's documents, field by field -----------------------------------------------------
@pytest.mark.parametrize("order", ["java", "written", "reversed"])
@pytest.mark.parametrize("fmt", ["ecs", "classic"])
def test_crate_documents_from_a_list_are_indexed_as_formats_md_promises(sample, facts, redis_pipeline_tree,
                                                                         make_logstash, fmt, order):
    model = make_logstash(redis_pipeline_tree, hash_order=order)
    assert redis_check(model, sample[fmt], fmt, facts) == []
    [event] = model.run(json.dumps(sample[fmt]).encode(), None)
    assert event["metadata"]["logcollect"]["format"] == fmt, "told apart by classic-only keys"
    assert "rabbitmq_properties" not in event["metadata"]


def test_one_list_with_both_encodings(sample, facts, redis_logstash):
    """A list may hold both encodings (two applications, one key): each value is decided alone."""
    values = [("ecs", sample["ecs"]), ("classic", sample["classic"]), ("ecs", sample["ecs"]),
              ("classic", {**sample["classic"], "levelname": "WARNING"})]
    for fmt, doc in values:
        assert redis_check(redis_logstash, doc, fmt, facts) == [], fmt


def test_a_list_value_has_no_amqp_properties(sample, redis_logstash):
    with pytest.raises(ValueError):
        redis_logstash.decode(json.dumps(sample["ecs"]).encode(), {"type": "ecs"})


def test_classic_without_application_has_no_service_name_on_the_redis_path(sample, facts, redis_logstash):
    """No app-id property to fall back on (docs/formats.md, "The Redis path"); the crate's
    classic documents always carry `application`."""
    doc = {k: v for k, v in sample["classic"].items() if k != "application"}
    assert redis_check(redis_logstash, doc, "classic", facts) == []
    [out] = redis_logstash.indexed(json.dumps(doc).encode(), None)
    assert "name" not in (out.get("service") or {})


def test_the_plain_codec_is_caught(sample, facts, redis_pipeline_tree, make_logstash):
    """SHOWS IT BITES: with `codec => plain` every value is one text event: the field-by-field
    check reports it."""
    plain = make_logstash(with_input_option(redis_pipeline_tree, "codec", "plain"))
    for fmt in ("ecs", "classic"):
        problems = redis_check(plain, sample[fmt], fmt, facts)
        assert problems, fmt
        [event] = plain.run(json.dumps(sample[fmt]).encode(), None)
        assert event["data"]["message"] == json.dumps(sample[fmt])


def test_the_redis_path_runs_the_amqp_paths_filters(redis_pipeline_tree, pipeline_tree):
    """One copy: both pipelines run the same filter section and output, plugin by plugin."""
    def rest(tree):
        return [(p.section, p.name, p.id, p.attrs, p.conditions) for p in m.plugins(tree) if p.section != "input"]
    assert repr(rest(redis_pipeline_tree)) == repr(rest(pipeline_tree))


def test_detection_without_the_classic_key_fallback_is_caught(sample, facts, redis_pipeline_tree, make_logstash):
    """SHOWS IT BITES: the Redis path depends on the fallback (no declared format, no type
    property): a detection that only reads markers files every classic value as ecs."""
    from test_logstash_pipeline import with_code
    no_fallback = """
      declared = event.get('[@metadata][logcollect][declared_format]') || event.get('[@metadata][rabbitmq_properties][type]')
      event.set('[@metadata][logcollect][format]', ['ecs', 'classic'].include?(declared) ? declared : 'ecs')
    """
    model = make_logstash(with_code(redis_pipeline_tree, "logcollect_detect_format", no_fallback))
    assert redis_check(model, sample["ecs"], "ecs", facts) == []
    assert redis_check(model, sample["classic"], "classic", facts)
