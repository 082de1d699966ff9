"""compose/docker-compose.yml: the compose-spec schema (check-jsonschema's bundled copy) and the
cross-references the schema cannot see."""
from __future__ import annotations

import copy
import re
import shutil
import subprocess
import sys

import pytest

import elkmodel as m

ONE_SHOT_RESTART = {"no"}


def test_compose_file_matches_the_compose_spec_schema():
    cmd = [sys.executable, "-m", "check_jsonschema", "--builtin-schema", "vendor.compose-spec",
           str(m.COMPOSE_FILE)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    assert proc.returncode == 0, f"{' '.join(cmd)}\n{proc.stdout}\n{proc.stderr}"
    assert "ok" in proc.stdout


def test_check_jsonschema_rejects_a_broken_compose_file(tmp_path):
    # The schema check must have teeth: a service with an unknown key fails.
    bad = tmp_path / "docker-compose.yml"
    bad.write_text("services:\n  x:\n    image: busybox\n    healthchek: {}\n")
    proc = subprocess.run([sys.executable, "-m", "check_jsonschema", "--builtin-schema",
                           "vendor.compose-spec", str(bad)], capture_output=True, text=True)
    assert proc.returncode != 0


def test_no_version_key_and_every_service_has_an_image_or_build(compose):
    assert "version" not in compose
    for name, svc in compose["services"].items():
        assert "image" in svc or "build" in svc, name


def _depends_on(svc) -> dict:
    deps = svc.get("depends_on", {})
    if isinstance(deps, list):
        return {d: {"condition": "service_started"} for d in deps}
    return deps


def _has_healthcheck(svc) -> bool:
    hc = svc.get("healthcheck")
    return bool(hc) and not hc.get("disable", False) and bool(hc.get("test"))


def test_depends_on_targets_and_conditions(compose):
    services = compose["services"]
    problems = []
    for name, svc in services.items():
        for dep, spec in _depends_on(svc).items():
            if dep not in services:
                problems.append(f"{name} depends on unknown service {dep}")
                continue
            cond = spec.get("condition", "service_started")
            target = services[dep]
            if cond == "service_healthy" and not _has_healthcheck(target):
                problems.append(f"{name} waits for {dep} to be healthy, but {dep} has no healthcheck")
            if cond == "service_completed_successfully":
                if str(target.get("restart", "no")) not in ONE_SHOT_RESTART:
                    problems.append(f"{name} waits for {dep} to complete, but {dep} restarts "
                                    f"({target.get('restart')}); only one-shot jobs complete")
                if _has_healthcheck(target):
                    problems.append(f"{dep} is waited on to complete but has a healthcheck")
            if cond == "service_started":
                problems.append(f"{name} -> {dep}: use a condition (service_healthy or "
                                f"service_completed_successfully), not a bare start order")
            if "profiles" in target and "profiles" not in svc:
                problems.append(f"{name} (always on) depends on {dep}, which only runs in a profile")
    assert not problems, "\n".join(problems)


def test_every_waited_on_service_has_a_healthcheck_or_is_one_shot(compose):
    services = compose["services"]
    waited = {dep for svc in services.values() for dep in _depends_on(svc)}
    for dep in waited:
        svc = services[dep]
        assert _has_healthcheck(svc) or str(svc.get("restart")) == "no", dep


def test_the_stack_has_the_expected_services(compose):
    services = compose["services"]
    for needed in ("rabbitmq", "elasticsearch", "setup", "logstash", "kibana", "kibana-import"):
        assert needed in services, needed
    assert services["rabbitmq"]["image"].endswith("-management")
    assert services["rabbitmq"].get("hostname"), "RabbitMQ's node name and data dir follow the host name"
    es_env = services["elasticsearch"]["environment"]
    assert es_env["discovery.type"] == "single-node"
    assert es_env["xpack.security.enabled"] == "true"
    assert "${ELASTIC_PASSWORD}" in es_env["ELASTIC_PASSWORD"]
    for job in ("setup", "kibana-import"):
        assert services[job]["restart"] == "no"
    assert services["demo"].get("profiles") == ["demo"]
    assert services["demo-redis"].get("profiles") == ["redis-demo"]
    assert services["mongodb"].get("profiles") == ["mongodb"]
    assert services["demo-mongodb"].get("profiles") == ["mongodb"]


def _volume_entries(svc):
    for v in svc.get("volumes", []):
        if isinstance(v, str):
            parts = v.split(":")
            yield parts[0], parts[1] if len(parts) > 1 else None
        else:
            yield v.get("source"), v.get("target")


def test_volumes_are_declared_and_mounted_files_exist(compose):
    declared = set((compose.get("volumes") or {}).keys())
    used = set()
    problems = []
    for name, svc in compose["services"].items():
        for source, target in _volume_entries(svc):
            if source is None:
                continue
            if source.startswith((".", "/", "~")):
                path = (m.COMPOSE_DIR / source).resolve()
                if not path.exists():
                    problems.append(f"{name}: mounted {source} does not exist ({path})")
                elif m.ROOT not in path.parents and path != m.ROOT:
                    problems.append(f"{name}: {source} is outside the repository")
            else:
                used.add(source)
                if source not in declared:
                    problems.append(f"{name}: named volume {source} is not declared at the top level")
    unused = declared - used
    if unused:
        problems.append(f"declared but unused volumes: {unused}")
    assert not problems, "\n".join(problems)


def test_stateful_services_keep_their_data_on_named_volumes(compose):
    s = compose["services"]
    targets = {name: {t for src, t in _volume_entries(svc) if src and not src.startswith((".", "/"))}
               for name, svc in s.items()}
    assert "/var/lib/rabbitmq" in targets["rabbitmq"]
    assert "/usr/share/elasticsearch/data" in targets["elasticsearch"]
    assert "/usr/share/logstash/data" in targets["logstash"], "persisted queue + DLQ"
    assert "/usr/share/logstash/data" in targets["logstash-redis"], "persisted queue + DLQ"
    assert "/data" in targets["redis"], "the append-only file"
    assert "/data/db" in targets["mongodb"], "MongoDB's data files (and the users created once)"
    # Two Logstash instances never share a path.data (both profiles may run at once).
    ls = {src for src, t in _volume_entries(s["logstash"]) if t == "/usr/share/logstash/data"}
    assert ls.isdisjoint(src for src, t in _volume_entries(s["logstash-redis"]) if t == "/usr/share/logstash/data")


def test_build_contexts_and_dockerfiles_exist(compose):
    for name, svc in compose["services"].items():
        build = svc.get("build")
        if not build:
            continue
        context = (m.COMPOSE_DIR / (build if isinstance(build, str) else build["context"])).resolve()
        assert context.is_dir(), name
        dockerfile = context / (build.get("dockerfile", "Dockerfile") if isinstance(build, dict) else "Dockerfile")
        assert dockerfile.is_file(), f"{name}: {dockerfile}"


def test_every_variable_is_in_env_or_has_a_default(env_file):
    text = m.COMPOSE_FILE.read_text(encoding="utf-8")
    variables = m.compose_variables(text)
    assert variables, "the compose file takes its versions and passwords from .env"
    missing = sorted({name for name, op, arg in variables
                      if name not in env_file and not (op in (":-", "-"))})
    assert not missing, f"used in docker-compose.yml, not in compose/.env and without default: {missing}"


def test_every_env_entry_is_used(env_file):
    text = m.COMPOSE_FILE.read_text(encoding="utf-8")
    used = {name for name, _, _ in m.compose_variables(text)}
    unused = sorted(k for k in env_file if k not in used and not k.startswith("COMPOSE_"))
    assert not unused, f"compose/.env entries nothing uses: {unused}"


def test_versions_and_passwords_come_from_env(compose, env_file):
    for name, svc in compose["services"].items():
        if "image" in svc:
            assert re.search(r"\$\{[A-Z_]*VERSION\}", svc["image"]), f"{name}: image version not from .env"
    for key, value in env_file.items():
        if "PASSWORD" in key or key.endswith("_KEY"):
            assert value, key
            # URL-safe: the publisher password goes into an AMQP URI, all of them into JSON.
            assert re.fullmatch(r"[A-Za-z0-9._~-]+", value), f"{key} must stay URL/JSON-safe"
    assert len(env_file["KIBANA_ENCRYPTION_KEY"]) >= 32
    assert re.fullmatch(r"[1-9][0-9]*", env_file["LCSTACK_RETENTION_DAYS"])


def test_healthchecks_do_not_interpolate_container_secrets_at_compose_time(compose):
    # $VAR in a healthcheck would be filled in by compose from .env (and end up in
    # `docker inspect`); container-side variables must be written $$VAR.
    for name, svc in compose["services"].items():
        hc = svc.get("healthcheck")
        if not hc:
            continue
        test = " ".join(hc["test"]) if isinstance(hc["test"], list) else hc["test"]
        for var in ("ELASTIC_PASSWORD", "KIBANA_SYSTEM_PASSWORD"):
            assert "${" + var + "}" not in test.replace("$${", "§{"), f"{name}: {var}"


@pytest.mark.parametrize("script", [m.RENDER_DEFINITIONS, m.SETUP_ES, m.IMPORT_KIBANA],
                         ids=lambda p: p.name)
def test_shell_scripts_parse(script):
    bash = shutil.which("bash")
    assert bash, "bash is needed to check the stack's shell scripts"
    proc = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert script.read_text().startswith("#!/bin/bash\n")
    assert "set -euo pipefail" in script.read_text()


def test_setup_script_covers_users_role_and_retention():
    text = m.SETUP_ES.read_text()
    assert "/_security/user/kibana_system/_password" in text
    assert "/_security/role/logcollect_writer" in text
    assert '"names": ["logs-logcollect-*"]' in text
    assert "/_security/user/logcollect_writer" in text
    assert "/_ilm/policy/logcollect" in text
    assert '${LCSTACK_RETENTION_DAYS}d' in text
    assert '"index.lifecycle.name": "logcollect"' in text
    assert '"index_patterns": ["logs-logcollect-*"]' in text


def test_kibana_import_job_fails_unless_success_true():
    text = m.IMPORT_KIBANA.read_text()
    assert "/api/saved_objects/_import?overwrite=true" in text
    assert "kbn-xsrf: true" in text
    assert """grep -Eq '"success"[[:space:]]*:[[:space:]]*true'""" in text
    assert "exit 1" in text


def _health_report(status: str, pipeline: str) -> dict:
    """A Logstash 8.19 health report (GET /_health_report) as documented: the top-level status
    is the worst indicator's; the details hold a nested `status` object."""
    return {"host": "logstash", "version": "8.19.10", "snapshot": False, "name": "logstash",
            "pipeline": {"workers": 2, "batch_size": 125, "batch_delay": 50}, "status": status,
            "symptom": f"1 indicator is {status}",
            "indicators": {"pipelines": {"status": pipeline, "symptom": "pipelines",
                                         "indicators": {"logcollect": {
                                             "status": pipeline, "symptom": "the pipeline",
                                             "details": {"status": {"state": "RUNNING"}}}}}}}


@pytest.mark.parametrize("answer, healthy", [
    ((200, _health_report("green", "green")), True),
    ((200, _health_report("yellow", "yellow")), True),
    ((200, _health_report("red", "red")), False),
    ((200, _health_report("unknown", "unknown")), False),
    ((200, {"status": "green", "indicators": {"pipelines": {"status": "red"}}}), False),
    ((200, {}), False),
    ((500, {"error": "boom"}), False),
], ids=["green", "yellow", "red", "unknown", "red-inside", "no-status", "http-500"])
def test_logstash_healthcheck_reads_the_status_in_the_body(compose, answer, healthy):
    """The health report answers 200 whatever its status: the healthcheck must read the body.
    Runs the compose file's own command (bash, curl) against a fake Logstash API."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    status, body = answer

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            data = json.dumps(body, separators=(",", ":")).encode()
            self.send_response(status if self.path == "/_health_report" else 404)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    test = compose["services"]["logstash"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL" and len(test) == 2
    assert "http://localhost:9600/_health_report" in test[1]
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        command = test[1].replace("$$", "$").replace(
            "http://localhost:9600", f"http://127.0.0.1:{httpd.server_address[1]}")
        proc = subprocess.run(["/bin/sh", "-c", command], capture_output=True, text=True, timeout=60)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert (proc.returncode == 0) is healthy, (proc.returncode, proc.stderr)


# --- transports as profiles: amqp (default) or redis -------------------------------------------
def active_services(compose: dict, profiles: set[str]) -> set[str]:
    return {name for name, svc in compose["services"].items()
            if not svc.get("profiles") or profiles & set(svc["profiles"])}


def profile_problems(compose: dict) -> list[str]:
    """With each transport's profile, its broker and its Logstash run and the other's do not, and
    every service that runs has what it waits for (one-shot jobs run by name excepted: compose
    starts a targeted service's dependencies)."""
    problems = []
    brokers = {"amqp": ("rabbitmq", "logstash"), "redis": ("redis", "logstash-redis"),
               "mongodb": ("mongodb", "demo-mongodb")}
    for profile, own in brokers.items():
        up = active_services(compose, {profile})
        for other, theirs in brokers.items():
            for name in theirs:
                if (name in up) != (other == profile):
                    problems.append(f"profile {profile}: {name} {'runs' if name in up else 'does not run'}")
        for name in up:
            for dep in _depends_on(compose["services"][name]):
                if dep not in up:
                    problems.append(f"profile {profile}: {name} waits for {dep}, which does not run")
    return problems


def test_transport_profiles_swap_rabbitmq_for_redis(compose, env_file):
    assert env_file["COMPOSE_PROFILES"] == "amqp", "RabbitMQ stays the default transport"
    assert profile_problems(compose) == []
    shared = active_services(compose, {"amqp"}) & active_services(compose, {"redis"})
    assert shared == {"elasticsearch", "setup", "kibana", "kibana-import"}
    s = compose["services"]
    # One Logstash definition: the two services differ in their input and broker only.
    assert s["logstash"]["healthcheck"] == s["logstash-redis"]["healthcheck"]
    for k, v in s["logstash"]["environment"].items():
        if not k.startswith(("LCSTACK_RABBITMQ_", "LCSTACK_QUEUE_TYPE")):
            assert s["logstash-redis"]["environment"].get(k) == v, k
    # SHOWS IT BITES: the Redis Logstash waiting for RabbitMQ, or RabbitMQ left on by default.
    broken = copy.deepcopy(compose)
    broken["services"]["logstash-redis"]["depends_on"]["rabbitmq"] = {"condition": "service_healthy"}
    assert profile_problems(broken)
    broken = copy.deepcopy(compose)
    del broken["services"]["rabbitmq"]["profiles"]
    assert profile_problems(broken)


def test_demo_services_push_to_their_transport(compose):
    s = compose["services"]
    assert "LOGCOLLECT_TRANSPORT" not in s["demo"]["environment"], "AMQP is the crate's default"
    assert set(_depends_on(s["demo"])) == {"rabbitmq"} and set(_depends_on(s["demo-redis"])) == {"redis"}
    assert s["demo-redis"]["build"] == s["demo"]["build"]
    assert s["demo-redis"]["restart"] == "no"


# --- profile mongodb: MongoDB itself is the destination ------------------------------------------
def _resolve(value: str, env_file: dict) -> str:
    """A compose value with its ${VAR} and ${VAR:-default} filled in from compose/.env."""
    return re.sub(r"\$\{([A-Z_0-9]+)(?::-([^}]*))?\}",
                  lambda g: env_file.get(g.group(1), g.group(2) or ""), value)


def test_mongodb_profile_runs_the_official_image_and_the_demo_ships_to_it(compose, env_file):
    s = compose["services"]
    mongo, demo = s["mongodb"], s["demo-mongodb"]
    assert mongo["image"] == "mongo:${MONGODB_VERSION}"
    assert mongo["environment"]["MONGO_INITDB_ROOT_PASSWORD"] == "${MONGODB_ROOT_PASSWORD}"
    mounts = dict((t, src) for src, t in _volume_entries(mongo))
    assert mounts["/docker-entrypoint-initdb.d/create-writer.js"] == "./mongodb/create-writer.js"
    assert mounts["/data/db"] == "mongodb-data"
    # The demo: the crate's own transport, as the least-privilege user, into that database.
    env = {k: _resolve(v, env_file) for k, v in demo["environment"].items()}
    assert env["LOGCOLLECT_TRANSPORT"] == "mongodb"
    database = _resolve(mongo["environment"]["LCSTACK_MONGODB_DATABASE"], env_file)
    assert database == env["LOGCOLLECT_MONGODB__DATABASE"] == env_file["LCSTACK_MONGODB_DATABASE"]
    password = env_file["MONGODB_WRITER_PASSWORD"]
    assert env["LOGCOLLECT_MONGODB__URI"] == (
        f"mongodb://logcollect-writer:{password}@mongodb:27017/?authSource={database}")
    assert _depends_on(demo) == {"mongodb": {"condition": "service_healthy"}}
    assert demo["build"] == s["demo"]["build"] and demo["restart"] == "no"
    assert "loadgen" in demo["command"]
    # Healthy only once the writer can log in, its password read in the container.
    test = mongo["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL" and "--username logcollect-writer" in test[1]
    assert '"$$MONGODB_WRITER_PASSWORD"' in test[1] and "${MONGODB_WRITER_PASSWORD}" not in test[1]
    assert '"$$LCSTACK_MONGODB_DATABASE"' in test[1]
    assert mongo["environment"]["MONGODB_WRITER_PASSWORD"] == "${MONGODB_WRITER_PASSWORD}"


_MONGOSH_STUB = """
// What the mongo image's entry point gives an init script: `db` (here a recorder) and
// process.env; the script runs as it is, then the recorded calls are printed.
const calls = [];
globalThis.db = { getSiblingDB: (name) => ({ createUser: (user) => calls.push({ db: name, user }) }) };
try {
  require(process.argv[2]);
  console.log(JSON.stringify({ calls }));
} catch (e) {
  console.log(JSON.stringify({ calls, error: String(e.message) }));
}
"""


def _run_init_script(tmp_path, env: dict) -> dict:
    import json
    node = shutil.which("node")
    assert node, "node runs the MongoDB init script here (apt-get install nodejs; scripts/test does)"
    stub = tmp_path / "stub.js"
    stub.write_text(_MONGOSH_STUB)
    script = m.COMPOSE_DIR / "mongodb" / "create-writer.js"
    proc = subprocess.run([node, str(stub), str(script)], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", **env}, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_mongodb_init_script_grants_read_write_on_one_database_only(compose, env_file, tmp_path):
    env = {k: _resolve(v, env_file) for k, v in compose["services"]["mongodb"]["environment"].items()}
    ran = _run_init_script(tmp_path, env)
    assert "error" not in ran, ran
    database = env_file["LCSTACK_MONGODB_DATABASE"]
    assert ran["calls"] == [{
        "db": database,
        "user": {"user": "logcollect-writer", "pwd": env_file["MONGODB_WRITER_PASSWORD"],
                 "roles": [{"role": "readWrite", "db": database}]},
    }]
    # SHOWS IT BITES: without its password the script creates no user and fails.
    ran = _run_init_script(tmp_path, {k: v for k, v in env.items() if k != "MONGODB_WRITER_PASSWORD"})
    assert ran["calls"] == [] and "MONGODB_WRITER_PASSWORD" in ran["error"]


def test_redis_keeps_an_append_only_file_and_never_evicts(compose, env_file):
    svc = compose["services"]["redis"]
    assert svc["image"] == "redis:${REDIS_VERSION}"
    assert re.fullmatch(r"7\.\d+", env_file["REDIS_VERSION"]), "Redis 7 (streams, BLMOVE, XAUTOCLAIM)"
    conf = {}
    for line in (m.COMPOSE_DIR / "redis" / "redis.conf").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            k, _, v = line.partition(" ")
            conf[k] = v.strip()
    assert conf["appendonly"] == "yes" and "dir" not in conf
    assert " --dir /data " in svc["command"][2], "the AOF on the redis-data volume"
    assert conf["maxmemory-policy"] == "noeviction"
    assert "appendfsync" not in conf, "set once, from .env"
    assert svc["environment"]["REDIS_APPENDFSYNC"] == "${REDIS_APPENDFSYNC:-everysec}"
    assert env_file["REDIS_APPENDFSYNC"] in ("everysec", "always")
    assert ("redis-data", "/data") in set(_volume_entries(svc))
    assert svc["healthcheck"]["test"] == ["CMD-SHELL", "redis-cli ping | grep -qx PONG"]


def _start_stack_redis(compose, env_file, tmp_path, password: str):
    """redis-server started with the compose service's own command line and redis.conf (the
    image's entry point left out, on a unix socket in tmp_path instead of port 6379)."""
    import os
    import time

    server = shutil.which("redis-server")
    assert server, "redis-server is needed (apt-get install redis-server)"
    command = compose["services"]["redis"]["command"]
    assert command[:2] == ["sh", "-c"]
    line = command[2].replace("$$", "$").replace("docker-entrypoint.sh ", "").replace(
        "/usr/local/etc/redis/redis.conf", str(m.COMPOSE_DIR / "redis" / "redis.conf"))
    sock = tmp_path / "redis.sock"
    assert " --dir /data " in line
    line = line.replace(" --dir /data ", f" --dir {tmp_path} ") + f" --port 0 --unixsocket {sock}"
    env = {**os.environ, "REDIS_PASSWORD": password, "REDIS_APPENDFSYNC": env_file["REDIS_APPENDFSYNC"],
           "REDIS_MAXMEMORY": env_file["REDIS_MAXMEMORY"]}
    proc = subprocess.Popen(["sh", "-c", line], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 30
    while not sock.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"redis-server did not start: {proc.stdout.read()}")
        time.sleep(0.05)
    return proc, sock


def _healthcheck(compose, sock, env) -> int:
    test = compose["services"]["redis"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    command = test[1].replace("redis-cli", f"redis-cli -s {sock}")
    return subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True, timeout=30).returncode


def test_redis_command_and_conf_run_and_the_healthcheck_reads_pong(compose, env_file, tmp_path):
    """The service's command line and redis.conf started with the real redis-server: AOF on,
    fsync and maxmemory from .env, noeviction, the password required; the healthcheck passes only
    with the password (REDISCLI_AUTH, as the service sets it) and a live server."""
    import os

    import redis

    proc, sock = _start_stack_redis(compose, env_file, tmp_path, "pw-test")
    try:
        c = redis.Redis(unix_socket_path=str(sock), password="pw-test")
        cfg = c.config_get("*")
        assert cfg["appendonly"] == "yes" and cfg["appendfsync"] == env_file["REDIS_APPENDFSYNC"]
        assert cfg["maxmemory-policy"] == "noeviction"
        assert int(cfg["maxmemory"]) == 512 * 1024 * 1024 and env_file["REDIS_MAXMEMORY"] == "512mb"
        with pytest.raises(redis.exceptions.AuthenticationError):
            redis.Redis(unix_socket_path=str(sock)).ping()
        auth = compose["services"]["redis"]["environment"]["REDISCLI_AUTH"]
        assert auth == "${REDIS_PASSWORD}"
        base = {k: v for k, v in os.environ.items() if k != "REDISCLI_AUTH"}
        assert _healthcheck(compose, sock, {**base, "REDISCLI_AUTH": "pw-test"}) == 0
        assert _healthcheck(compose, sock, {**base, "REDISCLI_AUTH": "wrong"}) != 0
        assert _healthcheck(compose, sock, base) != 0
        c.close()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    assert _healthcheck(compose, sock, {**base, "REDISCLI_AUTH": "pw-test"}) != 0, "server gone"


# --- the cluster profile: three RabbitMQ nodes, two Logstash instances ---------------------
def _cluster_conf() -> dict[str, str]:
    text = m.CLUSTER_CONF.read_text()
    return dict(re.findall(r"^([a-z_.0-9]+)\s*=\s*(.+?)\s*$", text, re.M))


def _brokers(services):
    return {n: s for n, s in services.items() if str(s.get("image", "")).startswith("rabbitmq:")}


def test_cluster_profile_has_three_nodes_that_find_each_other(compose):
    services = compose["services"]
    brokers = _brokers(services)
    assert sorted(brokers) == ["rabbitmq", "rabbitmq-2", "rabbitmq-3"]
    conf = _cluster_conf()
    assert conf["cluster_formation.peer_discovery_backend"] == "classic_config"
    listed = {v for k, v in conf.items() if k.startswith("cluster_formation.classic_config.nodes.")}
    assert listed == {f"rabbit@{s['hostname']}" for s in brokers.values()}, "every node, by its host name"
    seed = brokers["rabbitmq"]
    assert seed["profiles"] == ["amqp"], "the seed node is the single node of the default stack"
    for name in ("rabbitmq-2", "rabbitmq-3"):
        peer = brokers[name]
        assert peer["profiles"] == ["cluster"], name
        assert _has_healthcheck(peer), name
        assert _depends_on(peer) == {"rabbitmq": {"condition": "service_healthy"}}, \
            f"{name} joins the seed node: it starts once the seed is healthy"
        mounts = dict(_volume_entries(peer))
        assert mounts.get("./rabbitmq/cluster.conf", "").startswith("/etc/rabbitmq/conf.d/"), name
        # Everything else as the seed: entry point, definitions, configuration, passwords.
        for key in ("image", "entrypoint", "command"):
            assert peer[key] == seed[key], (name, key)
        assert peer["environment"] == seed["environment"], name
        seed_files = {s: t for s, t in _volume_entries(seed) if s.startswith(".")}
        assert seed_files.items() <= mounts.items(), name
    # One cookie for all, a data directory each.
    data = [t for s in brokers.values() for src, t in _volume_entries(s) if not src.startswith(".")]
    sources = [src for s in brokers.values() for src, t in _volume_entries(s) if not src.startswith(".")]
    assert data == ["/var/lib/rabbitmq"] * 3 and len(set(sources)) == 3
    assert {s["environment"]["LCSTACK_ERLANG_COOKIE"] for s in brokers.values()} == {"${RABBITMQ_ERLANG_COOKIE}"}
    assert "LCSTACK_ERLANG_COOKIE" in m.RENDER_DEFINITIONS.read_text()


def test_quorum_queue_gets_a_replica_on_every_node(definitions):
    q = next(q for q in definitions["queues"] if q["name"] == "logcollect")
    assert q["arguments"]["x-queue-type"] == "quorum"
    conf = (m.COMPOSE_DIR / "rabbitmq" / "rabbitmq.conf").read_text()
    settings = dict(re.findall(r"^([a-z_.]+)\s*=\s*(.+?)\s*$", conf, re.M))
    # Declared on the seed before the others join: membership grows to every node.
    assert settings["quorum_queue.continuous_membership_reconciliation.enabled"] == "true"
    assert int(settings["quorum_queue.continuous_membership_reconciliation.target_group_size"]) == 3


def test_two_logstash_instances_get_the_node_list(compose, env_file, rabbitmq_input_raw):
    services = compose["services"]
    hosts = rabbitmq_input_raw["host"]
    assert isinstance(hosts, list) and len(hosts) == 3
    refs = [m.env_ref(h) for h in hosts]
    assert all(r and r[1] == "rabbitmq" for r in refs), "a single node fills every slot"
    names = {s["hostname"] for s in _brokers(services).values()}
    first, second = services["logstash"], services["logstash-2"]
    assert first["profiles"] == ["amqp"] and second["profiles"] == ["cluster"]

    def node_list(svc, env):
        return {m.substitute_env(svc["environment"].get(r[0], "${%s}" % r[0]), env, strict=False)
                for r in refs}

    # The second instance always gets every node; the first does once .env says so.
    assert node_list(second, {}) == names
    cluster_env = {**env_file, "LCSTACK_RABBITMQ_HOST_2": "rabbitmq-2", "LCSTACK_RABBITMQ_HOST_3": "rabbitmq-3"}
    assert node_list(first, cluster_env) == names
    assert node_list(first, env_file) == {"rabbitmq"}, "the default stack: its single node"
    waits = _depends_on(second)
    assert all(waits.get(n, {}).get("condition") == "service_healthy" for n in names)
    assert _has_healthcheck(second) and second["healthcheck"] == first["healthcheck"]
    # Same pipeline and settings, a persisted queue each.
    a, b = dict(_volume_entries(first)), dict(_volume_entries(second))
    assert {k: v for k, v in a.items() if k.startswith(".")} == {k: v for k, v in b.items() if k.startswith(".")}
    assert a["logstash-data"] == b["logstash-2-data"] == "/usr/share/logstash/data"
    same = {k: v for k, v in first["environment"].items() if not k.startswith("LCSTACK_RABBITMQ_HOST")}
    assert same == {k: v for k, v in second["environment"].items() if not k.startswith("LCSTACK_RABBITMQ_HOST")}
