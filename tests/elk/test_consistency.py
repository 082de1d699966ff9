"""Consistency between the crate's defaults (its real output), docs/formats.md, the RabbitMQ
definitions, the Logstash pipeline, the compose file and the Kibana objects. Each test fails
when one side changes without the other."""
from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

import elkmodel as m


# --- the broker topology -------------------------------------------------------------------
def _one(items, **match):
    found = [i for i in items if all(i.get(k) == v for k, v in match.items())]
    assert len(found) == 1, f"expected one entry matching {match}, found {found}"
    return found[0]


def test_exchange_matches_the_crate(crate_defaults, definitions, rabbitmq_input):
    ex = _one(definitions["exchanges"], name=crate_defaults["exchange"], vhost="/")
    assert ex["type"] == crate_defaults["exchange_type"]
    assert ex["durable"] is crate_defaults["durable"]
    # formats.md: declared by the shipper durable, not auto-delete, no arguments. Declaring it
    # with anything else in the definitions would make the crate's declare PRECONDITION_FAILED.
    assert ex["auto_delete"] is False
    assert ex.get("internal", False) is False
    assert ex.get("arguments", {}) == {}
    assert rabbitmq_input["exchange"] == crate_defaults["exchange"]
    if "exchange_type" in rabbitmq_input:
        # The input then declares the exchange, with `durable` taken from the queue's setting.
        assert rabbitmq_input["exchange_type"] == crate_defaults["exchange_type"]
        assert m.as_bool(rabbitmq_input["durable"]) is crate_defaults["durable"]


def test_binding_key_matches_every_default_routing_key(crate_defaults, definitions, rabbitmq_input):
    binding = _one(definitions["bindings"], source=crate_defaults["exchange"],
                   destination=rabbitmq_input["queue"])
    assert binding["destination_type"] == "queue"
    assert binding["routing_key"] == rabbitmq_input["key"] == crate_defaults["binding_key"]
    template = crate_defaults["routing_key"]
    assert "{target}" in template
    targets = ["billing::api", "worker", "a::b::c::d", "tokio_util::codec", "é::ü",
               "x" * 300, "sample_documents"]
    for target in targets:
        key = m.routing_key_for(template, target)
        assert m.topic_matches(binding["routing_key"], key), f"{key!r} not matched by {binding['routing_key']!r}"
    # ...and the check itself is not vacuous:
    assert not m.topic_matches(binding["routing_key"], "other.billing")
    assert not m.topic_matches("logstash", "logstash.billing.api"), "the plugin's default key misses them"


def test_topic_matching_model():
    assert m.topic_matches("logstash.#", "logstash")
    assert m.topic_matches("logstash.#", "logstash.a.b")
    assert m.topic_matches("*.a", "x.a") and not m.topic_matches("*.a", "x.y.a")
    assert m.topic_matches("#", "") and m.topic_matches("#", "a.b")


def test_queue_definition_equals_the_pipeline_declaration(definitions, rabbitmq_input):
    q = _one(definitions["queues"], name=rabbitmq_input["queue"], vhost=rabbitmq_input.get("vhost", "/"))
    assert q["durable"] is m.as_bool(rabbitmq_input["durable"]) is True
    assert q["auto_delete"] is m.as_bool(rabbitmq_input.get("auto_delete", "false"))
    assert m.as_bool(rabbitmq_input.get("exclusive", "false")) is False
    assert q.get("arguments", {}) == rabbitmq_input.get("arguments", {})
    if q.get("arguments", {}).get("x-queue-type") == "quorum":
        assert q["durable"] and not q["auto_delete"], "quorum queues are durable, never auto-delete"


def test_vhosts_agree(definitions, rabbitmq_input, compose):
    vhost = rabbitmq_input.get("vhost", "/")
    assert {"name": vhost} in [{"name": v["name"]} for v in definitions["vhosts"]]
    uri = compose["services"]["demo"]["environment"]["LOGCOLLECT_BROKER_URI"]
    assert uri.endswith("/%2f") and vhost == "/"


# --- users and permissions -----------------------------------------------------------------
def _permission(definitions, user):
    return _one(definitions["permissions"], user=user, vhost="/")


def test_publisher_may_only_declare_and_write_the_exchange(crate_defaults, definitions, rabbitmq_input):
    pub = _permission(definitions, "logcollect-publisher")
    ex, q = crate_defaults["exchange"], rabbitmq_input["queue"]
    # What the crate does (formats.md: it declares only the exchange, then publishes).
    assert m.permitted(pub, "exchange.declare", exchange=ex)
    assert m.permitted(pub, "basic.publish", exchange=ex)
    # Nothing else.
    for op, kw in [("queue.declare", {"queue": q}), ("queue.declare", {"queue": "anything"}),
                   ("basic.consume", {"queue": q}), ("basic.get", {"queue": q}),
                   ("queue.bind", {"queue": q, "exchange": ex}), ("queue.delete", {"queue": q}),
                   ("basic.publish", {"exchange": ""}), ("basic.publish", {"exchange": "amq.topic"}),
                   ("basic.publish", {"exchange": ex + "2"}), ("basic.publish", {"exchange": "x" + ex}),
                   ("exchange.declare", {"exchange": "other"})]:
        assert not m.permitted(pub, op, **kw), f"publisher may {op} {kw}"
    user = _one(definitions["users"], name="logcollect-publisher")
    assert user["tags"] == []


def test_logstash_user_may_do_what_the_input_does_and_no_more(crate_defaults, definitions, rabbitmq_input):
    user_ref = m.env_ref(rabbitmq_input["user"])
    user = m.resolve_default(rabbitmq_input["user"]) if user_ref else rabbitmq_input["user"]
    perm = _permission(definitions, user)
    needed = m.pipeline_amqp_operations(rabbitmq_input)
    for op, kw in needed:
        assert m.permitted(perm, op, **kw), f"{user} may not {op} {kw}, which the input does"
    ex, q = crate_defaults["exchange"], rabbitmq_input["queue"]
    for op, kw in [("basic.publish", {"exchange": ex}), ("basic.publish", {"exchange": ""}),
                   ("queue.declare", {"queue": q + "2"}), ("basic.consume", {"queue": "other"}),
                   ("exchange.declare", {"exchange": "other"})]:
        assert not m.permitted(perm, op, **kw), f"{user} may {op} {kw}"
    if "exchange_type" not in rabbitmq_input:
        assert not m.permitted(perm, "exchange.declare", exchange=ex), \
            "the input never declares the exchange, so its user must not be able to"
    assert _one(definitions["users"], name=user)["tags"] == []


def test_compose_gives_logstash_the_users_of_the_definitions(compose, rabbitmq_input, definitions):
    env = compose["services"]["logstash"]["environment"]
    users = {u["name"] for u in definitions["users"]}
    assert env["LCSTACK_RABBITMQ_USER"] in users
    assert env["LCSTACK_RABBITMQ_USER"] == m.resolve_default(rabbitmq_input["user"])
    demo_uri = compose["services"]["demo"]["environment"]["LOGCOLLECT_BROKER_URI"]
    assert demo_uri.startswith("amqp://logcollect-publisher:${RABBITMQ_PUBLISHER_PASSWORD}@rabbitmq:5672/")


def test_definitions_passwords_are_placeholders_rendered_from_env(definitions, compose, env_file):
    rabbit_env = compose["services"]["rabbitmq"]["environment"]
    script = m.RENDER_DEFINITIONS.read_text()
    for user in definitions["users"]:
        ref = m.env_ref(user["password"])
        assert ref and ref[1] is None, f"{user['name']}: password must be a ${{VAR}} placeholder"
        var = ref[0]
        assert var in env_file, var
        assert rabbit_env.get(var) == "${" + var + "}", f"compose does not pass {var} to rabbitmq"
        assert var in script, f"render-definitions.sh does not substitute {var}"
        assert "password_hash" not in user


def test_render_definitions_script(tmp_path, definitions):
    bash = shutil.which("bash")
    assert bash
    src = tmp_path / "definitions.json"
    src.write_text(m.DEFINITIONS.read_text())
    out = tmp_path / "rendered.json"
    script = m.RENDER_DEFINITIONS.read_text()
    script = script.replace("/etc/rabbitmq/logcollect/definitions.json", str(src))
    script = script.replace("/tmp/logcollect-definitions.json", str(out))
    assert 'exec docker-entrypoint.sh "$@"' in script
    script = script.replace('exec docker-entrypoint.sh "$@"', 'echo "would exec: $*"')
    runner = tmp_path / "render.sh"
    runner.write_text(script)
    env = {"PATH": "/usr/bin:/bin", "RABBITMQ_ADMIN_PASSWORD": "a&b~1",
           "RABBITMQ_PUBLISHER_PASSWORD": "p/q$x", "RABBITMQ_LOGSTASH_PASSWORD": "l.2"}
    proc = subprocess.run([bash, str(runner), "rabbitmq-server"], env=env, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "would exec: rabbitmq-server" in proc.stdout
    rendered = json.loads(out.read_text())
    passwords = {u["name"]: u["password"] for u in rendered["users"]}
    assert passwords == {"admin": "a&b~1", "logcollect-publisher": "p/q$x", "logcollect-logstash": "l.2"}
    expected = json.loads(json.dumps(definitions))
    for u in expected["users"]:
        u["password"] = passwords[u["name"]]
    assert rendered == expected
    # A missing password or one that would break the JSON stops the container.
    for bad in ({"RABBITMQ_ADMIN_PASSWORD": ""}, {"RABBITMQ_ADMIN_PASSWORD": 'x"y'}):
        proc = subprocess.run([bash, str(runner), "rabbitmq-server"], env={**env, **bad},
                              capture_output=True, text=True)
        assert proc.returncode != 0 and "would exec" not in proc.stdout


def test_rabbitmq_conf_loads_the_rendered_definitions():
    conf = (m.COMPOSE_DIR / "rabbitmq" / "rabbitmq.conf").read_text()
    settings = dict(re.findall(r"^([a-z_.]+)\s*=\s*(.+?)\s*$", conf, re.M))
    assert settings["load_definitions"] == "/tmp/logcollect-definitions.json"
    assert "/tmp/logcollect-definitions.json" in m.RENDER_DEFINITIONS.read_text()


# --- ids and the data stream ---------------------------------------------------------------
def test_document_id_is_the_crates_id_field(crate_defaults, es_output, facts):
    ecs_id = m.field_ref_path(crate_defaults["ecs_id_field"])
    assert m.sprintf_field(es_output["document_id"]) == ecs_id
    # Classic documents carry the id elsewhere; the pipeline moves it to the same field.
    classic_id = m.field_ref_path(crate_defaults["classic_id_field"])
    renames = {tuple(m.field_ref_path(src)): m.field_ref_path(dst) for src, dst in facts.rename}
    assert renames.get(tuple(classic_id)) == ecs_id


def test_id_fields_are_in_the_real_documents(sample, crate_defaults):
    ecs_path = m.field_ref_path(crate_defaults["ecs_id_field"])
    classic_path = m.field_ref_path(crate_defaults["classic_id_field"])
    assert isinstance(m._get(sample["ecs"], ecs_path), str) and m._get(sample["ecs"], ecs_path)
    assert isinstance(m._get(sample["classic"], classic_path), str) and m._get(sample["classic"], classic_path)


def test_crate_defaults_match_formats_md(crate_defaults):
    text = (m.ROOT / "docs" / "formats.md").read_text()
    assert f"| exchange | `{crate_defaults['exchange']}` |" in text
    assert f"| exchange type | `{crate_defaults['exchange_type']}`" in text
    assert f"| routing key | `{crate_defaults['routing_key']}`" in text
    assert f"`{crate_defaults['binding_key']}`" in text
    assert f"`{crate_defaults['ecs_id_field']}`" in text
    assert f"`{crate_defaults['classic_id_field']}`" in text


def test_data_stream_role_and_data_view_agree(es_output, compose):
    stream = f"{es_output['data_stream_type']}-{es_output['data_stream_dataset']}-"
    setup = m.SETUP_ES.read_text()
    assert f'"{stream}*"' in setup, "writer role / template pattern"
    views = [json.loads(l) for l in m.NDJSON.read_text().splitlines() if l.strip()]
    titles = [o["attributes"]["title"] for o in views if o["type"] == "index-pattern"]
    assert titles == [f"{stream}*"]
    env = compose["services"]["logstash"]["environment"]
    assert env["LCSTACK_ES_USER"] == m.resolve_default(es_output["user"]) == "logcollect_writer"
    assert "/_security/user/logcollect_writer" in setup
    assert m.env_ref(es_output["data_stream_namespace"])[0] in env


def test_logstash_environment_covers_the_pipeline_variables(compose, pipeline_plugins):
    env = compose["services"]["logstash"]["environment"]
    needed = {name for p in pipeline_plugins for name, default in m.env_refs_in(p.attrs) if default is None}
    assert needed, "passwords come from the environment"
    assert needed <= set(env), f"pipeline variables without value in compose: {needed - set(env)}"


def test_pipeline_classic_keys_are_the_crates_reserved_keys(facts):
    """The classic encoder's RESERVED list (src/encoding/classic.rs) is the list of keys the
    pipeline treats as classic document keys; anything else is a user field."""
    assert m.CLASSIC_RS.exists(), "src/encoding/classic.rs is where the crate lists them"
    text = m.CLASSIC_RS.read_text()
    block = re.search(r"pub const RESERVED: &\[&str\] = &\[(.*?)\];", text, re.S)
    assert block, "RESERVED not found in src/encoding/classic.rs"
    reserved = re.findall(r'"([^"]+)"', block.group(1))
    assert reserved and sorted(reserved) == sorted(facts.classic_keys)


def test_classic_keys_are_all_handled(facts):
    handled = {src for src, _ in facts.rename} | set(facts.remove_fields) | {
        "@timestamp", "message", "tags", "spans"}
    assert set(facts.classic_keys) == handled, (
        "every reserved classic key is renamed, dropped or kept as is (same name in ecs)")
    # ... and formats.md's table promises each of them (the field-by-field checks use it).
    table = m.formats_md_classic_table()
    assert set(facts.classic_keys) <= set(table), set(facts.classic_keys) - set(table)
    for src, dst in facts.rename:
        assert table[src] == ".".join(m.field_ref_path(dst)), (src, dst, table[src])


def test_logstash_prefetch_times_batch_is_what_readme_says(rabbitmq_input, crate_defaults):
    """Logstash holds prefetch_count unacknowledged *messages*, each now a batch of up to
    batch.max_events events and batch.max_bytes bytes: docs/batches.md's figures must stay true."""
    prefetch = int(rabbitmq_input["prefetch_count"])
    max_events = int(crate_defaults["batch_max_events"])
    max_bytes = int(crate_defaults["batch_max_bytes"])
    readme = " ".join((m.ROOT / "docs" / "batches.md").read_text(encoding="utf-8").split())
    found = re.search(r"`prefetch_count => (\d+)`, i\.e\. up to (\d+) × (\d+) = ([\d,]+) events "
                      r"\(≤ (\d+) MiB\)", readme)
    assert found, "docs/batches.md no longer states prefetch_count × batch.max_events"
    r_prefetch, r_p, r_events, r_total, r_mib = found.groups()
    assert int(r_prefetch) == int(r_p) == prefetch, "docs/batches.md's prefetch_count is not the pipeline's"
    assert int(r_events) == max_events, "docs/batches.md's batch size is not the crate's default batch.max_events"
    assert int(r_total.replace(",", "")) == prefetch * max_events
    assert prefetch * max_bytes <= int(r_mib) << 20
    # About what Logstash's default (256 one-event messages) held in events, and far less than
    # 256 batches would hold in bytes.
    assert prefetch * max_events <= 16 * 256
    conf = m.AMQP_INPUT.read_text(encoding="utf-8")
    assert f"{prefetch * max_events} events" in conf, "the pipeline's comment on prefetch_count is stale"


# --- the queue type: one setting for the definitions and the pipeline ---------------------
QUEUE_TYPES = ("quorum", "classic", "stream")


def _render(tmp_path, queue_type):
    """The real render-definitions.sh in its render-only mode, with `queue_type` set (None: unset)."""
    out = tmp_path / f"rendered-{queue_type}.json"
    env = {"PATH": "/usr/bin:/bin", "RABBITMQ_ADMIN_PASSWORD": "a", "RABBITMQ_PUBLISHER_PASSWORD": "p",
           "RABBITMQ_LOGSTASH_PASSWORD": "l", "LCSTACK_DEFINITIONS_OUT": str(out)}
    if queue_type is not None:
        env[m.QUEUE_TYPE_VAR] = queue_type
    proc = subprocess.run(["bash", str(m.RENDER_DEFINITIONS)], env=env, capture_output=True, text=True)
    return proc, (json.loads(out.read_text()) if proc.returncode == 0 else None)


def test_queue_type_is_one_variable_with_one_default(rabbitmq_input_raw, env_file):
    raw = json.loads(m.DEFINITIONS.read_text(encoding="utf-8"))
    q = _one(raw["queues"], name=rabbitmq_input_raw["queue"], vhost="/")
    assert q["arguments"] == {"x-queue-type": "${" + m.QUEUE_TYPE_VAR + "}"}
    args = rabbitmq_input_raw["arguments"]
    assert list(args) == ["x-queue-type"]
    ref = m.env_ref(args["x-queue-type"])
    assert ref and ref[0] == m.QUEUE_TYPE_VAR, args
    default = m.render_default_queue_type()
    assert ref[1] == default == env_file[m.QUEUE_TYPE_VAR] == "quorum"


@pytest.mark.parametrize("queue_type", [None, *QUEUE_TYPES])
def test_definitions_and_pipeline_declare_the_same_queue_type(tmp_path, rabbitmq_input_raw, queue_type):
    proc, rendered = _render(tmp_path, queue_type)
    assert proc.returncode == 0, proc.stderr
    q = _one(rendered["queues"], name=rabbitmq_input_raw["queue"], vhost="/")
    env = {} if queue_type is None else {m.QUEUE_TYPE_VAR: queue_type}
    assert q["arguments"] == m.substitute_env(rabbitmq_input_raw["arguments"], env)
    assert q["arguments"]["x-queue-type"] == (queue_type or "quorum")
    assert q["durable"] and not q["auto_delete"], "every type is declared durable"


def test_an_unknown_queue_type_stops_the_broker_start(tmp_path):
    for bad in ("lazy", "Quorum", "quorum\"", ""):
        proc, _ = _render(tmp_path, bad)
        if bad == "":
            # Empty is unset: the default.
            assert proc.returncode == 0, proc.stderr
            continue
        assert proc.returncode != 0 and m.QUEUE_TYPE_VAR in proc.stderr, (bad, proc.stderr)


def test_compose_passes_the_queue_type_to_every_broker_and_logstash(compose):
    services = compose["services"]
    brokers = [n for n, s in services.items() if str(s.get("image", "")).startswith("rabbitmq:")]
    # The Redis path's Logstash reads no queue: the AMQP ones only.
    logstashes = [n for n, s in services.items() if "logstash" in str(s.get("image", ""))
                  and n != "logstash-redis"]
    assert len(brokers) == 3 and len(logstashes) == 2, (brokers, logstashes)
    for name in brokers + logstashes:
        env = services[name]["environment"]
        assert env.get(m.QUEUE_TYPE_VAR) == "${" + m.QUEUE_TYPE_VAR + "}", name
