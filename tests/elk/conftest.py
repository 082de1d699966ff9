"""Shared fixtures of the ELK checks (run: python3 -m pytest -q tests/elk)."""
from __future__ import annotations

import json
import os
import shutil

import pytest

import elkmodel as m


@pytest.fixture(scope="session")
def pipeline_tree():
    """The AMQP pipeline: logstash/pipeline/amqp/input.conf + shared/filter-output.conf."""
    return m.parse_pipeline("amqp")


@pytest.fixture(scope="session")
def redis_pipeline_tree():
    """The Redis pipeline: logstash/pipeline/redis/input.conf + shared/filter-output.conf."""
    return m.parse_pipeline("redis")


@pytest.fixture(scope="session")
def redis_input(redis_pipeline_tree):
    found = [p for p in m.plugins(redis_pipeline_tree) if p.section == "input"]
    assert [p.name for p in found] == ["redis"], f"expected one redis input, found {found}"
    return found[0].attrs


@pytest.fixture(scope="session")
def pipeline_plugins(pipeline_tree):
    return m.plugins(pipeline_tree)


@pytest.fixture(scope="session")
def rabbitmq_input(pipeline_plugins):
    found = [p for p in pipeline_plugins if (p.section, p.name) == ("input", "rabbitmq")]
    assert len(found) == 1, f"expected one rabbitmq input, found {found}"
    # The queue's arguments as Logstash sees them with no environment set (their defaults; the
    # queue type's agreement with the definitions under every value: test_consistency.py).
    attrs = dict(found[0].attrs)
    if "arguments" in attrs:
        attrs["arguments"] = m.substitute_env(attrs["arguments"], {})
    return attrs


@pytest.fixture(scope="session")
def rabbitmq_input_raw(pipeline_plugins):
    """The rabbitmq input's options as written (`${VAR:default}` references kept)."""
    return next(p for p in pipeline_plugins if (p.section, p.name) == ("input", "rabbitmq")).attrs


@pytest.fixture(scope="session")
def es_output(pipeline_plugins):
    found = [p for p in pipeline_plugins if (p.section, p.name) == ("output", "elasticsearch")]
    assert len(found) == 1, f"expected one elasticsearch output, found {found}"
    return found[0].attrs


@pytest.fixture(scope="session")
def definitions():
    """definitions.json with the queue type rendered as render-definitions.sh does by default."""
    return m.definitions_with_queue_type()


@pytest.fixture(scope="session")
def compose():
    return m.load_compose()


@pytest.fixture(scope="session")
def env_file():
    return m.load_env()


@pytest.fixture(scope="session")
def facts(pipeline_tree):
    """What the conf says about the classic normalisation (its field lists and renames)."""
    return m.PipelineFacts(pipeline_tree)


@pytest.fixture(scope="session")
def ruby():
    path = shutil.which("ruby")
    if not path:
        pytest.fail("ruby is needed to run the pipeline's ruby filters and the Logstash event model "
                    "(apt-get install ruby; scripts/test installs it)")
    return path


@pytest.fixture(scope="session")
def logstash(pipeline_tree, ruby):
    """The real conf run as Logstash runs it (hash options in Java HashMap order)."""
    model = m.LogstashModel(pipeline_tree, ruby, hash_order="java")
    yield model
    model.close()


@pytest.fixture(scope="session")
def redis_logstash(redis_pipeline_tree, ruby):
    """The Redis pipeline run as Logstash runs it (each list value through the json codec, no
    AMQP properties)."""
    model = m.LogstashModel(redis_pipeline_tree, ruby, hash_order="java")
    yield model
    model.close()


@pytest.fixture
def make_logstash(ruby):
    """Builds models of other (mutated) configs; closes them after the test."""
    made = []

    def make(tree, **kwargs):
        model = m.LogstashModel(tree, ruby, **kwargs)
        made.append(model)
        return model

    yield make
    for model in made:
        model.close()


@pytest.fixture(scope="session")
def sample():
    """The crate's real output: `cargo run -q --example sample_documents` (one JSON line with
    `defaults`, `ecs`, `classic`). With LOGCOLLECT_TEST_ELK_FIXTURE=1 the saved copy in
    tests/elk/fixtures is used instead (for developing these checks without the crate)."""
    if m.using_fixture():
        return json.loads(m.FIXTURE.read_text(encoding="utf-8"))
    if not m.SAMPLE_EXAMPLE.exists():
        pytest.fail(
            f"{m.SAMPLE_EXAMPLE.relative_to(m.ROOT)} does not exist: these checks need the crate's "
            f"real documents (or set {m.FIXTURE_ENV}=1 to use the saved fixture while developing)")
    data, _ = m.run_sample_documents()
    return data


@pytest.fixture(scope="session")
def crate_defaults(sample):
    d = sample["defaults"]
    expected = {"exchange", "exchange_type", "durable", "routing_key", "binding_key",
                "ecs_id_field", "classic_id_field", "batch_max_events", "batch_max_bytes"}
    assert expected <= set(d), f"sample_documents defaults lack {expected - set(d)}"
    return d


@pytest.fixture(scope="session")
def web_documents():
    """Real documents of the `web` example (built with the `http` feature, run against the real
    RabbitMQ): the access events and handler events of GET /hello, /fail and /panic."""
    url = os.environ.get("LOGCOLLECT_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
    docs = m.run_web_documents(url)
    assert len(docs) >= 7, f"the web example shipped {len(docs)} documents: {docs}"
    return docs
