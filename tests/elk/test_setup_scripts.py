"""The compose stack's one-shot jobs, run for real (bash + curl) against small fake
Elasticsearch / Kibana HTTP servers that record what they are sent."""
from __future__ import annotations

import base64
import json
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

import elkmodel as m

PASSWORD = "test-elastic-pw"


class FakeServer:
    """Answers every request with `responder(method, path, body) -> (status, json)`; checks
    basic auth as elastic:PASSWORD."""

    def __init__(self, responder):
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def _handle(self):
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                req = {"method": self.command, "path": self.path, "headers": dict(self.headers), "body": body}
                outer.requests.append(req)
                expected = "Basic " + base64.b64encode(f"elastic:{PASSWORD}".encode()).decode()
                if self.headers.get("Authorization") != expected:
                    status, payload = 401, {"error": "auth"}
                else:
                    status, payload = responder(self.command, self.path, body)
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = do_PUT = do_HEAD = _handle

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.httpd.shutdown()
        self.httpd.server_close()


def run_script(script, env: dict) -> subprocess.CompletedProcess:
    bash, curl = shutil.which("bash"), shutil.which("curl")
    assert bash and curl, "bash and curl are needed to run the stack's setup scripts"
    return subprocess.run([bash, str(script)], env={"PATH": "/usr/bin:/bin", **env},
                          capture_output=True, text=True, timeout=120)


def es_ok(method, path, body):
    return 200, ({"status": "yellow"} if path.startswith("/_cluster/health") else {"acknowledged": True})


def _setup_env(url, days="7"):
    return {"ES_URL": url, "ELASTIC_PASSWORD": PASSWORD, "KIBANA_SYSTEM_PASSWORD": "kib-pw",
            "LOGSTASH_ES_PASSWORD": "ls-pw", "LCSTACK_RETENTION_DAYS": days}


def test_setup_elasticsearch_sends_valid_requests(es_output):
    with FakeServer(es_ok) as es:
        proc = run_script(m.SETUP_ES, _setup_env(es.url))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    calls = {(r["method"], r["path"].split("?")[0]): r for r in es.requests if r["method"] != "GET"}
    bodies = {k: json.loads(r["body"]) for k, r in calls.items()}

    assert bodies[("POST", "/_security/user/kibana_system/_password")] == {"password": "kib-pw"}

    role = bodies[("PUT", "/_security/role/logcollect_writer")]
    stream_prefix = f"{es_output['data_stream_type']}-{es_output['data_stream_dataset']}-"
    assert role["indices"] == [{"names": [stream_prefix + "*"], "privileges": ["create_doc", "auto_configure"]}]
    assert set(role["cluster"]) == {"monitor"}

    user = bodies[("PUT", "/_security/user/logcollect_writer")]
    assert user["password"] == "ls-pw" and user["roles"] == ["logcollect_writer"]

    policy = bodies[("PUT", "/_ilm/policy/logcollect")]["policy"]
    assert policy["phases"]["delete"] == {"min_age": "7d", "actions": {"delete": {}}}
    assert "rollover" in policy["phases"]["hot"]["actions"]

    template = bodies[("PUT", "/_index_template/logs-logcollect")]
    assert template["index_patterns"] == [stream_prefix + "*"]
    assert template["priority"] > 100, "must win over the built-in logs template (priority 100)"
    assert template["data_stream"] == {}
    assert template["composed_of"][:2] == ["logs@mappings", "logs@settings"]
    assert "ecs@mappings" in template["composed_of"]
    assert template["template"]["settings"]["index.lifecycle.name"] == "logcollect"
    fields = template["template"]["mappings"]["properties"]["fields"]
    assert fields["type"] == "flattened"
    # One flattened leaf is one keyword term: without ignore_above a value over Lucene's
    # 32,766-byte term limit gets the whole document rejected (docs/formats.md).
    assert isinstance(fields.get("ignore_above"), int) and fields["ignore_above"] * 4 <= 32766
    assert f"ignore_above: {fields['ignore_above']}" in (m.ROOT / "docs" / "formats.md").read_text()
    # Order: the writer role exists before its user; the policy before the template using it.
    order = [k for k in calls]
    assert order.index(("PUT", "/_security/role/logcollect_writer")) < order.index(("PUT", "/_security/user/logcollect_writer"))
    assert order.index(("PUT", "/_ilm/policy/logcollect")) < order.index(("PUT", "/_index_template/logs-logcollect"))


def test_setup_elasticsearch_fails_on_an_error_answer():
    def refuse_role(method, path, body):
        if path.startswith("/_security/role/"):
            return 400, {"error": "bad role"}
        return es_ok(method, path, body)

    with FakeServer(refuse_role) as es:
        proc = run_script(m.SETUP_ES, _setup_env(es.url))
    assert proc.returncode != 0
    assert "bad role" in proc.stderr


@pytest.mark.parametrize("days", ["", "7d", "-1", "x"])
def test_setup_elasticsearch_rejects_bad_retention(days):
    with FakeServer(es_ok) as es:
        proc = run_script(m.SETUP_ES, _setup_env(es.url, days))
        assert proc.returncode != 0
        assert not [r for r in es.requests if r["method"] == "PUT"]


def _kibana(answer):
    def respond(method, path, body):
        if path.startswith("/api/status"):
            return 200, {"status": {"overall": {"level": "available"}}}
        if method == "POST" and path.startswith("/api/saved_objects/_import"):
            return 200, answer
        return 404, {}
    return respond


def _import_env(url):
    return {"KIBANA_URL": url, "ELASTIC_PASSWORD": PASSWORD, "KIBANA_OBJECTS": str(m.NDJSON)}


def test_kibana_import_posts_the_ndjson_and_succeeds_on_success_true():
    with FakeServer(_kibana({"success": True, "successCount": 7})) as kb:
        proc = run_script(m.IMPORT_KIBANA, _import_env(kb.url))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    post = [r for r in kb.requests if r["method"] == "POST"]
    assert len(post) == 1
    assert post[0]["path"] == "/api/saved_objects/_import?overwrite=true"
    assert post[0]["headers"].get("kbn-xsrf") == "true"
    assert post[0]["headers"]["Content-Type"].startswith("multipart/form-data")
    body = post[0]["body"]
    assert b'name="file"; filename="logcollect.ndjson"' in body
    assert m.NDJSON.read_bytes() in body


def test_kibana_import_fails_when_kibana_reports_errors():
    answer = {"success": False, "successCount": 6,
              "errors": [{"id": "x", "type": "lens", "error": {"type": "missing_references"}}]}
    with FakeServer(_kibana(answer)) as kb:
        proc = run_script(m.IMPORT_KIBANA, _import_env(kb.url))
    assert proc.returncode != 0
    assert "FAILED" in proc.stderr
