"""Against the real RabbitMQ (127.0.0.1:5672, guest/guest; LOGCOLLECT_TEST_AMQP_URL overrides):

1. declare exchange and queue exactly as compose/rabbitmq/definitions.json and the pipeline do
   (test-unique names, identical type, durability and arguments; a mismatch would be a
   PRECONDITION_FAILED), let the crate publish both encodings into them, consume, and decode the
   bodies as Logstash's json codec does;
2. import the definitions file itself (users, permissions, exchange, queue, binding) into a
   throw-away vhost with rabbitmqctl, and check that the publisher and Logstash users can do
   exactly what the crate and the pipeline need, the crate publishing as the publisher user.

The crate's `sample_documents --publish` ships the printed event through the real layer, so the
published copy has its own event id, timestamp and source line; the comparison masks those.
Nothing durable is left behind: test queues and exchanges are deleted, the throw-away vhost and
users too. An unreachable broker is a failure, not a skip.
"""
from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import subprocess
import time
import urllib.parse
import uuid

import pika
import pika.exceptions
import pytest

import elkmodel as m

AMQP_URL = os.environ.get("LOGCOLLECT_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
# Bounds a wait that would otherwise hang forever; never part of what is asserted.
HANG_GUARD_SECONDS = 60


def _redacted(url: str) -> str:
    p = urllib.parse.urlsplit(url)
    netloc = p.hostname + (f":{p.port}" if p.port else "")
    return urllib.parse.urlunsplit((p.scheme, netloc, p.path, p.query, ""))


def connect(url: str = AMQP_URL) -> pika.BlockingConnection:
    params = pika.URLParameters(url)
    params.connection_attempts = 1
    try:
        return pika.BlockingConnection(params)
    except pika.exceptions.AMQPError as e:
        pytest.fail(
            f"RabbitMQ at {_redacted(url)} is not reachable ({e!r}). These checks need a real broker: "
            f"start it with `rabbitmq-server -detached` (or point LOGCOLLECT_TEST_AMQP_URL at one).")


def with_vhost(url: str, vhost: str, user: str | None = None, password: str | None = None) -> str:
    p = urllib.parse.urlsplit(url)
    user = user if user is not None else urllib.parse.unquote(p.username or "guest")
    password = password if password is not None else urllib.parse.unquote(p.password or "guest")
    netloc = f"{urllib.parse.quote(user, safe='')}:{urllib.parse.quote(password, safe='')}@{p.hostname}:{p.port or 5672}"
    return urllib.parse.urlunsplit((p.scheme, netloc, "/" + urllib.parse.quote(vhost, safe=""), "", ""))


def _expect_refused(code: int, fn, *args, **kwargs):
    with pytest.raises(pika.exceptions.ChannelClosedByBroker) as info:
        fn(*args, **kwargs)
    assert info.value.reply_code == code, info.value


def publish(url: str, exchange: str, fmt: str) -> dict:
    """Let the crate publish its sample event in `fmt` to `exchange`; returns its printed JSON
    line (the documents as encoded locally, the published copy differing only in volatile fields)."""
    if m.using_fixture():
        # Development only (LOGCOLLECT_TEST_ELK_FIXTURE=1): stand in for the crate with pika.
        data = json.loads(m.FIXTURE.read_text())
        doc = data[fmt]
        conn = connect(url)
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            event_id = doc["event"]["id"] if fmt == "ecs" else doc["event_id"]
            target = doc["log"]["logger"] if fmt == "ecs" else doc["logger"]
            key = m.routing_key_for(data["defaults"]["routing_key"], target)
            ch.basic_publish(exchange, key, json.dumps(doc).encode(),
                             pika.BasicProperties(delivery_mode=2, content_type="application/json",
                                                  message_id=event_id, app_id=data["ecs"]["service"]["name"],
                                                  timestamp=int(time.time()), type=fmt),
                             mandatory=True)
        finally:
            conn.close()
        return data
    if not m.SAMPLE_EXAMPLE.exists():
        pytest.fail(f"{m.SAMPLE_EXAMPLE.relative_to(m.ROOT)} does not exist; the broker checks publish "
                    f"through it (LOGCOLLECT_TEST_ELK_FIXTURE=1 stands in for it while developing)")
    data, _ = m.run_sample_documents(publish=True, extra_env={
        "LOGCOLLECT_BROKER_URI": url, "LOGCOLLECT_EXCHANGE": exchange, "LOGCOLLECT_FORMAT": fmt})
    return data


def event_id_of(doc: dict, fmt: str, defaults: dict) -> str:
    field = defaults["ecs_id_field"] if fmt == "ecs" else defaults["classic_id_field"]
    return m._get(doc, m.field_ref_path(field))


def doc_format(doc: dict) -> str:
    return "classic" if "@version" in doc else "ecs"


# Fields that differ between two encodings of the same call site: the id and time of the event,
# the source line and the thread id of the `tracing` call that publishes it.
VOLATILE = {
    # The published copy is logged in a span of its own: its own trace ids.
    "ecs": [["event", "id"], ["@timestamp"], ["log", "origin", "file", "line"], ["process", "thread", "id"],
            ["trace", "id"], ["span", "id"], ["transaction", "id"]],
    "classic": [["event_id"], ["@timestamp"], ["lineno"], ["trace_id"], ["span_id"], ["transaction_id"]],
}
UUID_RE = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def stable(doc: dict, fmt: str) -> dict:
    out = json.loads(json.dumps(doc))
    for path in VOLATILE[fmt]:
        assert m._has(out, path), f"{fmt} document lacks {'.'.join(path)}: {doc}"
        m._remove(out, path)
    return out


def take_all(channel, queue: str, expected: int) -> list[tuple]:
    """basic_get until `expected` messages arrived, then check nothing else is there.
    Returns [(the documents of the body, method, properties, body)]."""
    got = []
    deadline = time.monotonic() + HANG_GUARD_SECONDS
    while len(got) < expected:
        method, props, body = channel.basic_get(queue, auto_ack=False)
        if method is None:
            if time.monotonic() > deadline:
                pytest.fail(f"{expected - len(got)} of {expected} messages never reached queue {queue}")
            time.sleep(0.05)
            continue
        got.append((m.crate_documents(body), method, props, body))
        channel.basic_ack(method.delivery_tag)
    method, _, _ = channel.basic_get(queue, auto_ack=False)
    assert method is None, f"more messages than the {expected} published reached {queue}"
    return got


def amqp_properties(props) -> dict:
    """Message properties as the rabbitmq input puts them in [@metadata][rabbitmq_properties]."""
    out = {"app-id": props.app_id, "content-type": props.content_type, "delivery-mode": props.delivery_mode,
           "message-id": props.message_id, "timestamp": props.timestamp, "type": props.type}
    return {k: v for k, v in out.items() if v is not None}


def check_published(got: list[tuple], published: dict[str, dict], exchange: str, key: str, defaults: dict):
    """One message per format, each holding the event the crate printed (volatile fields aside)."""
    by_format: dict[str, list] = {}
    for events, method, props, _ in got:
        for ev in events:
            by_format.setdefault(doc_format(ev), []).append((ev, method, props, len(events)))
    assert sorted(by_format) == sorted(published), f"formats received: {sorted(by_format)}"
    for fmt, items in by_format.items():
        assert len(items) == 1, f"{fmt}: {len(items)} events, expected the one published"
        event, method, props, n_in_body = items[0]
        expected = published[fmt][fmt]
        assert stable(event, fmt) == stable(expected, fmt), f"{fmt}: decoded body differs from the crate's document"
        eid = event_id_of(event, fmt, defaults)
        assert re.fullmatch(UUID_RE, eid), eid
        assert method.exchange == exchange
        prefix = defaults["routing_key"].split("{")[0]
        assert method.routing_key.startswith(prefix), method.routing_key
        assert m.topic_matches(key, method.routing_key)
        assert m.topic_matches(defaults["binding_key"], method.routing_key)
        assert props.delivery_mode == 2
        assert props.content_type == "application/json"
        assert props.type == fmt
        assert isinstance(props.timestamp, int)
        if n_in_body == 1:
            assert props.message_id == eid
        assert props.app_id == published[fmt]["ecs"]["service"]["name"]


def test_crate_documents_reader():
    assert m.crate_documents(b'{"a": 1}') == [{"a": 1}]
    assert m.crate_documents(b'[{"a": 1}, {"b": 2}]') == [{"a": 1}, {"b": 2}]
    with pytest.raises(ValueError):
        m.crate_documents(b'"x"')


def test_declare_as_stack_and_pipeline_then_decode_what_the_crate_publishes(
        definitions, rabbitmq_input, crate_defaults, logstash, facts):
    ex_def = next(e for e in definitions["exchanges"] if e["name"] == crate_defaults["exchange"])
    q_def = next(q for q in definitions["queues"] if q["name"] == rabbitmq_input["queue"])
    binding = next(b for b in definitions["bindings"] if b["destination"] == rabbitmq_input["queue"])
    assert binding["routing_key"] == rabbitmq_input["key"]
    suffix = uuid.uuid4().hex[:12]
    # Test-unique names, so that only this test's crate runs publish into them (other tests
    # publish to `logstash` at the same time); type, durability and arguments are the real ones.
    exchange = f"{ex_def['name']}-elktest-{suffix}"
    queue = f"{q_def['name']}-elktest-{suffix}"

    def declare_exchange(channel, name):
        channel.exchange_declare(name, exchange_type=ex_def["type"], durable=ex_def["durable"],
                                 auto_delete=ex_def["auto_delete"], internal=ex_def.get("internal", False),
                                 arguments=ex_def.get("arguments") or None)

    conn = connect()
    try:
        ch = conn.channel()
        # The real exchange as the definitions declare it: equivalent to the crate's own
        # declaration (it already exists whenever the crate's tests ran), or 406.
        declare_exchange(ch, ex_def["name"])
        # The stack's pre-declaration (definitions file) ...
        declare_exchange(ch, exchange)
        try:
            ch.queue_declare(queue, durable=q_def["durable"], auto_delete=q_def["auto_delete"],
                             exclusive=False, arguments=q_def.get("arguments") or None)
            ch.queue_bind(queue, exchange, routing_key=binding["routing_key"])
            # ... then Logstash's declaration, with the pipeline's own settings: equal, or 406.
            ch.queue_declare(queue, durable=m.as_bool(rabbitmq_input["durable"]),
                             auto_delete=m.as_bool(rabbitmq_input.get("auto_delete", "false")),
                             exclusive=m.as_bool(rabbitmq_input.get("exclusive", "false")),
                             passive=m.as_bool(rabbitmq_input.get("passive", "false")),
                             arguments=rabbitmq_input.get("arguments") or None)
            ch.queue_bind(queue, exchange, routing_key=rabbitmq_input["key"])

            # The check has teeth: a different declaration of the same queue is refused.
            _expect_refused(406, conn.channel().queue_declare, queue, durable=not q_def["durable"],
                            auto_delete=q_def["auto_delete"], arguments=q_def.get("arguments") or None)

            # The crate declares the exchange itself, then publishes (mandatory, confirms).
            published = {fmt: publish(AMQP_URL, exchange, fmt) for fmt in ("ecs", "classic")}
            got = take_all(ch, queue, expected=2)
        finally:
            cleanup = ch if ch.is_open else conn.channel()
            cleanup.queue_delete(queue)
            cleanup.exchange_delete(exchange)
    finally:
        if conn.is_open:
            conn.close()

    check_published(got, published, exchange, rabbitmq_input["key"], crate_defaults)
    # What the pipeline indexes for each message as it came through the broker (its body and
    # its real AMQP properties): the shape docs/formats.md promises, field by field.
    for docs, _, props, body in got:
        indexed = logstash.indexed(body, amqp_properties(props))
        assert len(indexed) == len(docs) == 1
        expected = m.expected_indexed(docs[0], props.type, identity_keys=facts.identity_keys, app_id=props.app_id)
        assert m.differences(indexed[0], expected) == [], props.type


# --- the definitions file itself, imported into a throw-away vhost --------------------------
def rabbitmqctl_cmd() -> list[str]:
    cmd = shlex.split(os.environ.get("LOGCOLLECT_TEST_RABBITMQCTL", "rabbitmqctl"))
    if not shutil.which(cmd[0]):
        pytest.fail(f"{cmd[0]} not found: the definitions check imports compose/rabbitmq/definitions.json "
                    f"into a throw-away vhost with rabbitmqctl (install rabbitmq-server, start it with "
                    f"`rabbitmq-server -detached`, or set LOGCOLLECT_TEST_RABBITMQCTL)")
    return cmd


def rabbitmqctl(*args: str, stdin: str | None = None) -> str:
    proc = subprocess.run(rabbitmqctl_cmd() + ["-q", *args], input=stdin, capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0:
        pytest.fail(f"rabbitmqctl {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc.stdout


@pytest.fixture
def imported_definitions(definitions):
    """definitions.json with real passwords, vhost "/" -> a fresh vhost, user names suffixed
    (users are broker-wide); imported with `rabbitmqctl import_definitions`, removed afterwards."""
    suffix = uuid.uuid4().hex[:10]
    vhost = f"logcollect-elktest-{suffix}"
    names = {u["name"]: f"{u['name']}-elktest-{suffix}" for u in definitions["users"]}
    passwords = {u["name"]: secrets.token_hex(16) for u in definitions["users"]}
    d = json.loads(json.dumps(definitions))
    for u in d["users"]:
        u["password"] = passwords[u["name"]]
        u["name"] = names[u["name"]]
    for p in d["permissions"]:
        p["user"] = names[p["user"]]
    for section in ("vhosts", "permissions", "exchanges", "queues", "bindings"):
        for item in d.get(section, []):
            key = "name" if section == "vhosts" else "vhost"
            assert item[key] == "/", f"{section}: {item}"
            item[key] = vhost
    connect().close()  # a clear failure first if the broker is down
    # From stdin: rabbitmqctl may run as another user that cannot read pytest's tmp_path.
    rabbitmqctl("import_definitions", "--format", "json", stdin=json.dumps(d))
    try:
        yield {"vhost": vhost, "names": names, "passwords": passwords}
    finally:
        rabbitmqctl("delete_vhost", vhost)
        for name in names.values():
            rabbitmqctl("delete_user", name)


def test_definitions_file_imports_and_users_can_do_exactly_their_job(
        imported_definitions, definitions, rabbitmq_input, crate_defaults):
    vhost = imported_definitions["vhost"]
    names, passwords = imported_definitions["names"], imported_definitions["passwords"]
    exchange, queue = crate_defaults["exchange"], rabbitmq_input["queue"]
    logstash_user = m.resolve_default(rabbitmq_input["user"])
    consumer_url = with_vhost(AMQP_URL, vhost, names[logstash_user], passwords[logstash_user])
    publisher_url = with_vhost(AMQP_URL, vhost, names["logcollect-publisher"], passwords["logcollect-publisher"])

    # The imported topology is what the definitions say.
    listed = rabbitmqctl("list_queues", "-p", vhost, "name", "durable", "auto_delete", "arguments")
    assert queue in listed
    q_def = next(q for q in definitions["queues"] if q["name"] == queue)
    if q_def.get("arguments", {}).get("x-queue-type") == "quorum":
        assert "quorum" in listed, listed
    assert exchange in rabbitmqctl("list_exchanges", "-p", vhost, "name", "type", "durable")

    # Logstash's user: exactly what the rabbitmq input does (inputs/rabbitmq.rb setup!).
    conn = connect(consumer_url)
    try:
        ch = conn.channel()
        for op, kw in m.pipeline_amqp_operations(rabbitmq_input):
            if op == "queue.declare":
                ch.queue_declare(queue, durable=m.as_bool(rabbitmq_input["durable"]),
                                 auto_delete=m.as_bool(rabbitmq_input.get("auto_delete", "false")),
                                 exclusive=m.as_bool(rabbitmq_input.get("exclusive", "false")),
                                 arguments=rabbitmq_input.get("arguments") or None)
            elif op == "exchange.declare":
                ch.exchange_declare(exchange, exchange_type=rabbitmq_input["exchange_type"],
                                    durable=m.as_bool(rabbitmq_input["durable"]))
            elif op == "queue.bind":
                ch.queue_bind(queue, exchange, routing_key=rabbitmq_input["key"])
            elif op == "basic.consume":
                tag = ch.basic_consume(queue, lambda *a: None, auto_ack=False)
                ch.basic_cancel(tag)
        # ... and no more.
        if "exchange_type" not in rabbitmq_input:
            _expect_refused(403, conn.channel().exchange_declare, exchange, exchange_type="topic", durable=True)
        _expect_refused(403, conn.channel().queue_declare, queue + "-other", durable=True)
        pub = conn.channel()
        pub.confirm_delivery()
        _expect_refused(403, pub.basic_publish, exchange, "logstash.x", b"{}")
    finally:
        if conn.is_open:
            conn.close()

    # The publisher user: the crate itself publishes through it ...
    published = publish(publisher_url, exchange, "ecs")
    conn = connect(publisher_url)
    try:
        _expect_refused(403, conn.channel().queue_declare, "anything", durable=True)
        _expect_refused(403, conn.channel().basic_get, queue)
        _expect_refused(403, conn.channel().queue_bind, queue, exchange, routing_key="#")
    finally:
        if conn.is_open:
            conn.close()

    # ... into the pre-declared queue, where Logstash's user reads it.
    conn = connect(consumer_url)
    try:
        got = take_all(conn.channel(), queue, expected=1)
    finally:
        if conn.is_open:
            conn.close()
    check_published(got, {"ecs": published}, exchange, rabbitmq_input["key"], crate_defaults)


def _seq_no(doc: dict):
    flat = m.flatten(doc)
    found = [v for k, v in flat.items() if k == "seq_no" or k.endswith(".seq_no")]
    return found[0] if len(found) == 1 else None


@pytest.mark.parametrize("fmt", ["ecs", "classic"])
def test_a_batch_the_crate_publishes_is_one_event_per_document(fmt, rabbitmq_input, logstash):
    """The crate packs events into one message (a JSON array); through the queue as the pipeline
    binds it, the json codec and the filter section, it is N events, each once, in order."""
    n = 300
    suffix = uuid.uuid4().hex[:12]
    exchange = f"logstash-elktest-batch-{suffix}"
    conn = connect()
    try:
        ch = conn.channel()
        ch.exchange_declare(exchange, exchange_type="topic", durable=True)
        queue = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(queue, exchange, routing_key=rabbitmq_input["key"])
        try:
            if m.using_fixture():
                # Development only: stand in for the crate with pika, one array body.
                data = json.loads(m.FIXTURE.read_text())
                docs = []
                for i in range(n):
                    d = json.loads(json.dumps(data[fmt]))
                    d.setdefault("labels" if fmt == "ecs" else "fields", {})["seq_no"] = i
                    docs.append(d)
                ch.confirm_delivery()
                ch.basic_publish(exchange, "logstash.loadgen", json.dumps(docs).encode(),
                                 pika.BasicProperties(delivery_mode=2, content_type="application/json"))
            else:
                # One full batch of n events: linger long enough that it is sent only once full
                # (the flush at exit sends what is left, so a stalled run still delivers all).
                cmd = ["cargo", "run", "-q", "--example", "loadgen", "--",
                       "--events", str(n), "--threads", "1"]
                proc = subprocess.run(cmd, cwd=m.ROOT, capture_output=True, text=True, timeout=1800,
                                      env=m.crate_env({
                                          "LOGCOLLECT_BROKER_URI": AMQP_URL,
                                          "LOGCOLLECT_EXCHANGE": exchange,
                                          "LOGCOLLECT_FORMAT": fmt,
                                          "LOGCOLLECT_BATCH__MAX_EVENTS": str(n),
                                          "LOGCOLLECT_BATCH__MAX_BYTES": str(4 << 20),
                                          "LOGCOLLECT_BATCH__LINGER_MS": "60000",
                                      }))
                assert proc.returncode == 0, f"loadgen failed:\n{proc.stdout}\n{proc.stderr}"
            bodies = []
            deadline = time.monotonic() + HANG_GUARD_SECONDS
            events: list[dict] = []
            while sum(1 for e in events if _seq_no(e) is not None) < n:
                method, props, body = ch.basic_get(queue, auto_ack=True)
                if method is None:
                    if time.monotonic() > deadline:
                        pytest.fail(f"only {len(events)} events reached {queue}")
                    time.sleep(0.05)
                    continue
                bodies.append(body)
                events.extend(logstash.indexed(body, amqp_properties(props)))
        finally:
            cleanup = ch if ch.is_open else conn.channel()
            cleanup.exchange_delete(exchange)
    finally:
        if conn.is_open:
            conn.close()

    arrays = [b for b in bodies if b.lstrip().startswith(b"[")]
    assert arrays, "no message held a batch"
    assert len(bodies) < n, f"{n} events came in {len(bodies)} messages: not batched"
    assert sum(len(m.crate_documents(b)) for b in bodies) == len(events)
    load = [e for e in events if _seq_no(e) is not None]
    assert [_seq_no(e) for e in load] == list(range(n)), "each event once, in the order logged"
    for e in load:
        # What Logstash indexes: ECS objects, an id to deduplicate by.
        assert isinstance(e.get("event"), dict) and isinstance(e["event"].get("id"), str), e
        assert isinstance(e.get("log"), dict), e
