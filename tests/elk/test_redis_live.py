"""The Redis path against a real Redis (127.0.0.1:6379, or LOGCOLLECT_TEST_REDIS_URL): the crate's
real documents pushed as the crate pushes them (multi-value RPUSH, one JSON object per value) to a
test-unique list, taken off it as logstash-input-redis 3.7 takes them (its LRANGE+LTRIM script,
batch_count at a time; BLPOP when batch_count is 1), each value run through the model of the
Redis pipeline and compared with docs/formats.md field by field, every seq_no counted."""
from __future__ import annotations

import json
import os
import uuid

import pytest

import elkmodel as m
from test_redis_pipeline import with_input_option

URL = os.environ.get("LOGCOLLECT_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="module")
def client():
    import redis

    c = redis.Redis.from_url(URL)
    try:
        c.ping()
    except redis.exceptions.ConnectionError as e:
        pytest.fail(f"these checks need a Redis at {URL} ({e}): start one (redis-server) or set "
                    f"LOGCOLLECT_TEST_REDIS_URL")
    yield c
    c.close()


@pytest.fixture
def key(client):
    name = f"logcollect-elktest-{uuid.uuid4().hex[:12]}"
    yield name
    client.delete(name)


def numbered(sample: dict, n: int) -> list[tuple[str, dict]]:
    """n documents, both encodings interleaved, each with a user field seq_no (fields.seq_no once
    indexed, in either encoding)."""
    out = []
    for i in range(n):
        fmt = "classic" if i % 3 == 0 else "ecs"
        doc = json.loads(json.dumps(sample[fmt]))
        if fmt == "ecs":
            doc["fields"]["seq_no"] = i
        else:
            doc["seq_no"] = i
        out.append((fmt, doc))
    return out


def push(client, key: str, docs: list[tuple[str, dict]], per_push: int):
    """As the crate does for a list: one multi-value RPUSH per batch; the reply is the length."""
    length = 0
    for start in range(0, len(docs), per_push):
        values = [json.dumps(d, separators=(",", ":")) for _, d in docs[start:start + per_push]]
        length = client.rpush(key, *values)
        assert length == start + len(values), "RPUSH answers the list's new length"
    return length


def delivered(model: m.LogstashModel, batches, docs, facts) -> tuple[list[int], list[str]]:
    """seq_no of every indexed document in order, and every field-by-field difference."""
    seen, problems = [], []
    for value in (v for batch in batches for v in batch):
        indexed = model.indexed(value, None)
        if len(indexed) != 1:
            problems.append(f"{len(indexed)} documents for one value")
            continue
        seq = (indexed[0].get("fields") or {}).get("seq_no")
        seen.append(seq)
        if not isinstance(seq, int) or not 0 <= seq < len(docs):
            problems.append(f"a document without a pushed seq_no: {indexed[0]}")
            continue
        fmt, doc = docs[seq]
        problems += [f"seq_no {seq}: {p}" for p in
                     m.differences(indexed[0], m.expected_indexed(doc, fmt, identity_keys=facts.identity_keys))]
    return seen, problems


def test_pushed_documents_are_read_in_batches_and_indexed_as_promised(client, key, sample, facts,
                                                                       redis_pipeline_tree, make_logstash):
    docs = numbered(sample, 300)
    assert push(client, key, docs, per_push=7) == 300
    model = make_logstash(redis_pipeline_tree, env={"LCSTACK_REDIS_KEY": key})
    count = int(model.input["batch_count"])
    batches = model.redis_read(client)
    assert [len(b) for b in batches] == [count] * (300 // count) + ([300 % count] if 300 % count else [])
    assert client.exists(key) == 0, "the input took everything (LTRIM of the last batch empties the list)"
    seen, problems = delivered(model, batches, docs, facts)
    assert problems == []
    assert seen == list(range(300)), "every seq_no once, in push order"


def test_one_value_at_a_time_when_batch_count_is_one(client, key, sample, facts, redis_pipeline_tree, make_logstash):
    docs = numbered(sample, 5)
    push(client, key, docs, per_push=5)
    model = make_logstash(with_input_option(redis_pipeline_tree, "batch_count", "1"),
                          env={"LCSTACK_REDIS_KEY": key})
    batches = model.redis_read(client)
    assert [len(b) for b in batches] == [1] * 5
    assert delivered(model, batches, docs, facts) == (list(range(5)), [])


def test_a_wrong_key_delivers_nothing(client, key, sample, facts, redis_pipeline_tree, make_logstash):
    """SHOWS IT BITES: an input reading another list takes none of the pushed documents; they
    stay in the crate's list (and the right input then takes them all)."""
    docs = numbered(sample, 20)
    push(client, key, docs, per_push=7)
    wrong = make_logstash(with_input_option(redis_pipeline_tree, "key", key + "-other"))
    batches = wrong.redis_read(client)
    seen, _ = delivered(wrong, batches, docs, facts)
    assert seen != list(range(20)) and seen == []
    assert client.llen(key) == 20
    right = make_logstash(redis_pipeline_tree, env={"LCSTACK_REDIS_KEY": key})
    assert delivered(right, right.redis_read(client), docs, facts) == (list(range(20)), [])


def test_a_wrong_codec_fails_the_live_check(client, key, sample, facts, redis_pipeline_tree, make_logstash):
    """SHOWS IT BITES: with the plain codec the values arrive, but not as documents."""
    docs = numbered(sample, 4)
    push(client, key, docs, per_push=4)
    plain = make_logstash(with_input_option(redis_pipeline_tree, "codec", "plain"), env={"LCSTACK_REDIS_KEY": key})
    seen, problems = delivered(plain, plain.redis_read(client), docs, facts)
    assert seen == [None] * 4, "no seq_no: each value is one text event"
    assert len(problems) == 4
