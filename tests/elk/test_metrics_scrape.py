"""Both sources of `logcollect_*` metrics, scraped over real HTTP against the real RabbitMQ
(127.0.0.1:5672, guest/guest; LOGCOLLECT_TEST_AMQP_URL overrides) and parsed with the Prometheus
project's own Python parser (prometheus_client.parser) rather than a parser of ours: every line
must parse, each family has the type docs/metrics.md gives it, no series appears twice.

1. `logcollect collect --http`'s `/metrics` after a known load: the counts equal what was sent,
   the facility label stays bounded; the same parser refuses the scrape with a line broken the
   ways a renderer can break it.
2. An application with the library's `metrics` feature, examples/metrics.rs as shipped (the real
   `metrics-exporter-prometheus` recorder): its `/metrics` holds the shipper's `logcollect_*`
   series beside the application's own, labelled by transport and reason only, and every event
   it counted as confirmed reached the broker.

The binaries are the workspace's debug builds, made as scripts/test makes them (`cargo test
--workspace --all-features --no-run`: nothing to do after that command, so no second build with
other features). An unreachable broker is a failure, not a skip.
"""
from __future__ import annotations

import json
import os
import re
import signal
import queue as queue_mod
import socket
import subprocess
import threading
import time
import urllib.request
import uuid
from pathlib import Path

import pika
import pika.exceptions
import pytest
from prometheus_client.parser import text_string_to_metric_families

import elkmodel as m

AMQP_URL = os.environ.get("LOGCOLLECT_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2F")
# Bounds a wait that would otherwise hang forever; never part of what is asserted.
HANG_GUARD_SECONDS = 120
WRITTEN = "logcollect_collect_events_written_total"
# The first 50 facilities seen get a label of their own (cli/src/collect/metrics.rs).
MAX_FACILITY_LABELS = 50
DOC = m.ROOT / "docs" / "metrics.md"


def workspace_binaries() -> Path:
    """The debug target directory, after the build."""
    build = subprocess.run(
        ["cargo", "test", "--workspace", "--all-features", "--no-run", "--quiet"],
        cwd=m.ROOT, capture_output=True, text=True, timeout=3600)
    assert build.returncode == 0, f"cannot build the workspace:\n{build.stderr}"
    target = Path(os.environ.get("CARGO_TARGET_DIR", m.ROOT / "target"))
    if not target.is_absolute():
        target = m.ROOT / target
    return target / "debug"


def documented_types() -> dict[str, str]:
    """docs/metrics.md's tables: metric name → type."""
    return dict(re.findall(r"^\| `(logcollect_[a-z0-9_]+)` \| (\w+) \|", DOC.read_text(), re.M))


def check_types(samples) -> None:
    """Every family scraped is documented, with the type the docs give (a histogram may be
    rendered as a summary, as the docs say)."""
    documented = documented_types()
    assert documented, f"no metric table in {DOC}"
    for (name, _), (kind, _) in samples.items():
        family = re.sub(r"(_total|_count|_sum|_bucket)$", "", name)
        doc = documented.get(name) or documented.get(family + "_total") or documented.get(family)
        assert doc is not None, f"{name} is not in {DOC}"
        allowed = {"histogram", "summary"} if doc == "histogram" else {doc}
        assert kind in allowed, f"{name}: {kind}, documented as {doc}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int) -> tuple[int, str, str]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    with urllib.request.urlopen(request, timeout=30) as answer:
        return answer.status, answer.headers.get("Content-Type", ""), answer.read().decode()


def parse(text: str) -> dict[tuple[str, tuple], tuple[str, float]]:
    """Every sample as (name, sorted labels) → (its family's type, value); a series twice fails
    (Prometheus would drop the scrape's samples as duplicates)."""
    samples: dict[tuple[str, tuple], tuple[str, float]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in samples, f"series twice: {key}"
            samples[key] = (family.type, sample.value)
    return samples


def lines(path: Path) -> int:
    try:
        return sum(1 for line in path.read_text().splitlines() if "seq_no" in line)
    except FileNotFoundError:
        return 0


class Collector:
    """`logcollect collect` with a status page on a free port, its stderr read line by line."""

    def __init__(self, binary: Path, directory: Path, exchange: str, queue: str):
        self.port = free_port()
        env = m.crate_env({"LOGCOLLECT_BROKER_URI": AMQP_URL, "LOGCOLLECT_EXCHANGE": exchange,
                           "NO_COLOR": "1"})
        self.proc = subprocess.Popen(
            [str(binary), "collect", "--dir", str(directory), "--queue", queue,
             "--http", f"127.0.0.1:{self.port}"],
            env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True)
        self.lines: queue_mod.Queue[str] = queue_mod.Queue()
        self.seen: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stderr:
            self.lines.put(line.rstrip("\n"))

    def wait_for_line(self, text: str):
        deadline = time.monotonic() + HANG_GUARD_SECONDS
        while not any(text in line for line in self.seen):
            left = deadline - time.monotonic()
            if left <= 0:
                pytest.fail(f"collect did not print {text!r}: {self.seen}")
            try:
                self.seen.append(self.lines.get(timeout=left))
            except queue_mod.Empty:
                pass

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def connect() -> pika.BlockingConnection:
    params = pika.URLParameters(AMQP_URL)
    params.connection_attempts = 1
    try:
        return pika.BlockingConnection(params)
    except pika.exceptions.AMQPError as e:
        pytest.fail(f"RabbitMQ is not reachable ({e!r}): start it or set LOGCOLLECT_TEST_AMQP_URL")


@pytest.fixture(scope="module")
def binaries():
    return workspace_binaries()


def test_collect_metrics_parse_with_the_prometheus_parser_and_count_what_was_sent(binaries, tmp_path):
    suffix = uuid.uuid4().hex[:12]
    exchange, queue = f"lc-elk-metrics-{suffix}", f"lc-elk-metrics-q-{suffix}"
    files = tmp_path / "files"
    collector = Collector(binaries / "logcollect", files, exchange, queue)
    try:
        collector.wait_for_line("consuming queue")
        conn = connect()
        try:
            ch = conn.channel()
            ch.confirm_delivery()
            publish = lambda key, docs: ch.basic_publish(  # noqa: E731
                exchange, key, json.dumps(docs).encode(),
                pika.BasicProperties(delivery_mode=2, content_type="application/json"))
            # N events of service `main` in arrays of 10, then one event of each of 60 more
            # services: `main` and the first 49 of them are labelled, 11 count as "other".
            n, others = 300, 60
            for chunk in range(n // 10):
                publish("logstash.main", [{"message": "m", "service": {"name": "main"},
                                           "fields": {"seq_no": i}}
                                          for i in range(chunk * 10, chunk * 10 + 10)])
            for i in range(others):
                publish("logstash.svc", {"message": "m", "service": {"name": f"svc{i:02}"},
                                         "fields": {"seq_no": i}})

            # On disk first (lines reach the file at each sync), then the scrape.
            main_file = files / "main" / "root.log"
            last_file = files / f"svc{others - 1:02}" / "root.log"
            deadline = time.monotonic() + HANG_GUARD_SECONDS
            while lines(main_file) < n or lines(last_file) < 1:
                assert time.monotonic() < deadline, f"{lines(main_file)} of {n} lines written"
                time.sleep(0.1)
            while True:
                code, content_type, text = scrape(collector.port)
                samples = parse(text)
                written = sum(v for (name, _), (_, v) in samples.items() if name == WRITTEN)
                if written == n + others:
                    break
                assert time.monotonic() < deadline, f"written {written} of {n + others}:\n{text}"
                time.sleep(0.1)
            assert code == 200
            assert content_type.startswith("text/plain; version=0.0.4"), content_type

            def value(name, **labels):
                key = (name, tuple(sorted(labels.items())))
                assert key in samples, f"no {key} in:\n{text}"
                return samples[key][1]

            def kind(name):
                return next(t for (sample, _), (t, _) in samples.items() if sample == name)

            assert value(WRITTEN, facility="main:root") == n
            assert value("logcollect_collect_bytes_written_total", facility="main:root") == \
                main_file.stat().st_size
            labels = {dict(k[1])["facility"] for k in samples if k[0] == WRITTEN}
            assert len(labels) == MAX_FACILITY_LABELS + 1, sorted(labels)
            assert value(WRITTEN, facility="other") == others - (MAX_FACILITY_LABELS - 1)
            assert value("logcollect_collect_messages_total") == n // 10 + others
            for zero in ("logcollect_collect_write_errors_total",
                         "logcollect_collect_rejected_messages_total",
                         "logcollect_collect_errors_total"):
                assert value(zero) == 0, zero
            assert value("logcollect_collect_broker_connected") == 1
            assert value("logcollect_collect_healthy") == 1
            for name, expected in [(WRITTEN, "counter"),
                                   ("logcollect_collect_messages_total", "counter"),
                                   ("logcollect_collect_open_files", "gauge"),
                                   ("logcollect_collect_broker_connected", "gauge")]:
                assert kind(name) == expected, name
            check_types(samples)
            # Every series is the collector's own, labelled by facility at most.
            for name, labels_of in samples:
                assert name.startswith("logcollect_collect_"), name
                assert {k for k, _ in labels_of} <= {"facility"}, (name, labels_of)

            # The same parser refuses the scrape with one line broken.
            line = next(l for l in text.splitlines() if l.startswith(WRITTEN + '{facility="main:root"}'))
            for broken in [line.replace('"} ', "} "),            # unterminated label value
                           line.replace('="main:root"', "=main:root"),  # unquoted
                           line.rsplit(" ", 1)[0] + " three hundred",    # not a number
                           line.rsplit(" ", 1)[0],                       # no value
                           line.replace("facility=", "1facility=")]:     # bad label name
                with pytest.raises(ValueError):
                    parse(text.replace(line, broken))
            with pytest.raises(AssertionError, match="series twice"):
                parse(text.replace(line, line + "\n" + line))
        finally:
            cleanup = conn.channel()
            cleanup.queue_delete(queue)
            cleanup.exchange_delete(exchange)
            conn.close()
    finally:
        collector.stop()


def test_an_application_with_the_metrics_feature_serves_logcollect_metrics_over_http(binaries):
    example = binaries / "examples" / "metrics"
    assert example.is_file(), f"no {example}: the example is built with the `metrics` feature"
    exchange = f"lc-elk-app-metrics-{uuid.uuid4().hex[:12]}"
    conn = connect()
    try:
        ch = conn.channel()
        # Declared as the shipper declares it; a queue of the test's own receives what it ships.
        ch.exchange_declare(exchange, exchange_type="topic", durable=True)
        queue = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(queue, exchange, routing_key="#")
        port = free_port()
        app = subprocess.Popen(
            [str(example)], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True,
            env=m.crate_env({"LOGCOLLECT_BROKER_URI": AMQP_URL, "LOGCOLLECT_EXCHANGE": exchange,
                             "METRICS_ADDR": f"127.0.0.1:{port}", "NO_COLOR": "1"}))
        try:
            first = app.stdout.readline()
            assert first.strip() == f"metrics on http://127.0.0.1:{port}/metrics", first
            # The application logs one event a second: wait until the scrape shows three confirmed.
            deadline = time.monotonic() + HANG_GUARD_SECONDS
            while True:
                code, content_type, text = scrape(port)
                samples = parse(text)
                confirmed = samples.get(
                    ("logcollect_events_confirmed_total", (("transport", "amqp"),)), (None, 0))[1]
                if confirmed >= 3:
                    break
                assert time.monotonic() < deadline, f"confirmed {confirmed}:\n{text}"
                time.sleep(0.2)
        finally:
            app.send_signal(signal.SIGINT)
            try:
                out, err = app.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                app.kill()
                out, err = app.communicate()
        assert code == 200
        assert content_type.startswith("text/plain; version=0.0.4"), content_type
        assert app.returncode == 0, f"the example failed:\n{out}\n{err}"
        assert "undelivered at exit: 0" in out, out

        def value(name, **labels):
            key = (name, tuple(sorted(labels.items())))
            assert key in samples, f"no {key} in:\n{text}"
            return samples[key][1]

        amqp = {"transport": "amqp"}
        # The application's own counter and the shipper's, side by side in one scrape.
        assert value("app_jobs_total") >= 1
        assert value("logcollect_events_accepted_total", **amqp) >= confirmed
        assert value("logcollect_messages_confirmed_total", **amqp) >= 1
        for reason in ("queue_full", "oversize", "closed", "spool_full"):
            assert value("logcollect_events_dropped_total", reason=reason, **amqp) == 0, reason
        assert value("logcollect_connected", **amqp) == 1
        assert value("logcollect_delivery_latency_seconds_count", **amqp) >= 1
        ours = {k: v for k, v in samples.items() if k[0].startswith("logcollect_")}
        check_types(ours)
        for name, labels in ours:
            assert {k for k, _ in labels} <= {"transport", "reason", "quantile"}, (name, labels)
        # Every family the docs list for the library is there.
        library = {n for n in documented_types() if not n.startswith("logcollect_collect_")}
        scraped = {re.sub(r"_(count|sum)$", "", name) for name, _ in ours}
        assert library <= scraped, sorted(library - scraped)

        # Everything it counted as confirmed reached the broker (and the rest at shutdown).
        received = 0
        while True:
            method, _, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                break
            docs = json.loads(body)
            received += sum(1 for d in (docs if isinstance(docs, list) else [docs])
                            if d.get("message") == "job done")
        assert received >= confirmed, (received, confirmed)
    finally:
        cleanup = conn.channel()
        cleanup.exchange_delete(exchange)
        conn.close()
