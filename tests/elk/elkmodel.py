"""Helpers for the ELK checks: repository paths, parsers for the stack's files, the plugin option
lists, a model of RabbitMQ's access control and a model of the pipeline's classic normalisation.

Nothing here asserts; the test modules do.
"""
from __future__ import annotations

import copy
import json
import os
import pathlib
import re
import subprocess
from typing import Any, Iterator

import yaml
from lscl.lang import (
    LsclAnd,
    LsclAttribute,
    LsclBlock,
    LsclConditions,
    LsclEqualTo,
    LsclNot,
    LsclSelector,
)
from lscl.parser import parse_lscl

ROOT = pathlib.Path(__file__).resolve().parents[2]
ELK_TESTS = ROOT / "tests" / "elk"
COMPOSE_DIR = ROOT / "compose"
COMPOSE_FILE = COMPOSE_DIR / "docker-compose.yml"
ENV_FILE = COMPOSE_DIR / ".env"
DEFINITIONS = COMPOSE_DIR / "rabbitmq" / "definitions.json"
RENDER_DEFINITIONS = COMPOSE_DIR / "rabbitmq" / "render-definitions.sh"
PIPELINE_DIR = ROOT / "logstash" / "pipeline"
PIPELINE = PIPELINE_DIR / "logcollect.conf"
LOGSTASH_YML = ROOT / "logstash" / "config" / "logstash.yml"
PIPELINES_YML = ROOT / "logstash" / "config" / "pipelines.yml"
NDJSON = ROOT / "kibana" / "logcollect.ndjson"
KIBANA_GENERATOR = ROOT / "kibana" / "generate.py"
SETUP_ES = COMPOSE_DIR / "setup" / "setup-elasticsearch.sh"
IMPORT_KIBANA = COMPOSE_DIR / "setup" / "import-kibana-objects.sh"
CLASSIC_RS = ROOT / "src" / "encoding" / "classic.rs"
SAMPLE_EXAMPLE = ROOT / "examples" / "sample_documents.rs"
FIXTURE = ELK_TESTS / "fixtures" / "sample_documents.json"

# Set to 1 to develop against tests/elk/fixtures/sample_documents.json (a saved output of
# `cargo run -q --example sample_documents`) instead of running the crate; the broker checks then
# publish it with pika. Never set in CI: there the crate's real output is used. The LOGCOLLECT_TEST_ prefix is one the
# crate's configuration ignores.
FIXTURE_ENV = "LOGCOLLECT_TEST_ELK_FIXTURE"


def using_fixture() -> bool:
    return os.environ.get(FIXTURE_ENV) == "1"


# --------------------------------------------------------------------------------------------
# Logstash plugin options (the options the pipeline may use). Sources: the plugin sources of
# logstash-integration-rabbitmq 7.x (inputs/rabbitmq.rb, plugin_mixins/rabbitmq_connection.rb),
# logstash-output-elasticsearch 11/12 (plugin_mixins/elasticsearch/api_configs.rb,
# outputs/elasticsearch/data_stream_support.rb), the mutate/ruby filter and json codec docs, and
# the "common options" sections of the Logstash plugin reference.
# --------------------------------------------------------------------------------------------
COMMON_OPTIONS = {
    "input": {"add_field", "codec", "enable_metric", "id", "tags", "type"},
    "filter": {"add_field", "add_tag", "enable_metric", "id", "periodic_flush", "remove_field", "remove_tag"},
    "output": {"codec", "enable_metric", "id"},
}

RABBITMQ_INPUT_OPTIONS = {
    # connection (rabbitmq_connection mixin)
    "host", "port", "user", "password", "vhost", "ssl", "ssl_version", "ssl_certificate_path",
    "ssl_certificate_password", "automatic_recovery", "connect_retry_interval",
    "connection_timeout", "heartbeat", "passive", "arguments",
    # input
    "queue", "durable", "auto_delete", "exclusive", "prefetch_count", "ack", "exchange",
    "exchange_type", "key", "subscription_retry_interval_seconds", "metadata_enabled",
    # Threadable inputs
    "threads",
}

# Options of the elasticsearch output that are accepted together with `data_stream => "true"`
# (data_stream_support.rb: shared API configs, data_stream_*, action=create, routing, pipeline,
# ecs_compatibility and the base output options). `index`, `manage_template`, `template*`,
# `ilm_*`... exist but make a data-stream configuration fail at start-up.
ES_OUTPUT_API_OPTIONS = {
    "user", "password", "api_key", "cloud_auth", "document_id", "path", "bulk_path", "parameters",
    "ssl_enabled", "ssl_verification_mode", "ssl_certificate_authorities", "ca_trusted_fingerprint",
    "ssl_truststore_path", "ssl_truststore_type", "ssl_truststore_password", "ssl_keystore_path",
    "ssl_keystore_type", "ssl_keystore_password", "ssl_supported_protocols", "ssl_certificate",
    "ssl_key", "ssl_cipher_suites", "sniffing", "sniffing_delay", "sniffing_path", "proxy",
    "timeout", "silence_errors_in_log", "pool_max", "pool_max_per_route", "healthcheck_path",
    "resurrect_delay", "validate_after_inactivity", "http_compression", "compression_level",
    "custom_headers", "hosts", "cloud_id", "retry_initial_interval", "retry_max_interval",
    "dlq_custom_codes", "dlq_on_failed_indexname_interpolation",
}
ES_OUTPUT_DATA_STREAM_OPTIONS = ES_OUTPUT_API_OPTIONS | {
    "data_stream", "data_stream_type", "data_stream_dataset", "data_stream_namespace",
    "data_stream_sync_fields", "data_stream_auto_routing", "action", "routing", "pipeline",
    "ecs_compatibility",
}

MUTATE_OPTIONS = {
    "coerce", "rename", "update", "replace", "convert", "gsub", "uppercase", "capitalize",
    "lowercase", "strip", "split", "join", "merge", "copy", "tag_on_failure",
}
RUBY_OPTIONS = {"code", "init", "path", "script_params", "tag_on_exception", "tag_with_exception_message"}
JSON_CODEC_OPTIONS = {"charset", "target", "ecs_compatibility"}

PLUGIN_OPTIONS = {
    ("input", "rabbitmq"): RABBITMQ_INPUT_OPTIONS,
    ("filter", "mutate"): MUTATE_OPTIONS,
    ("filter", "ruby"): RUBY_OPTIONS,
    ("output", "elasticsearch"): ES_OUTPUT_DATA_STREAM_OPTIONS,
}
CODECS = {"json": JSON_CODEC_OPTIONS}

BOOLEAN_OPTIONS = {
    ("input", "rabbitmq"): {"ssl", "automatic_recovery", "passive", "durable", "auto_delete",
                            "exclusive", "ack"},
    ("output", "elasticsearch"): {"ssl_enabled", "sniffing", "http_compression",
                                  "data_stream_sync_fields", "data_stream_auto_routing",
                                  "dlq_on_failed_indexname_interpolation"},
}
ENUM_OPTIONS = {
    ("input", "rabbitmq", "metadata_enabled"): {"none", "basic", "extended", "false", "true"},
    ("input", "rabbitmq", "exchange_type"): {"fanout", "direct", "topic", "headers",
                                              "x-consistent-hash", "x-modulus-hash"},
    ("output", "elasticsearch", "data_stream"): {"true", "false", "auto"},
    ("output", "elasticsearch", "data_stream_type"): {"logs", "metrics", "synthetics", "traces"},
    ("output", "elasticsearch", "action"): {"create"},
}


# --------------------------------------------------------------------------------------------
# Logstash config: parsing and walking
# --------------------------------------------------------------------------------------------
def parse_pipeline(path: pathlib.Path = PIPELINE):
    return parse_lscl(path.read_text(encoding="utf-8"))


class Plugin:
    """One plugin block of a pipeline, with the conditions it sits under."""

    def __init__(self, section: str, name: str, block: LsclBlock, conditions: tuple):
        self.section = section
        self.name = name
        self.block = block
        self.conditions = conditions
        self.attrs: dict[str, Any] = {}
        self.duplicates: list[str] = []
        self.sub_blocks: list[LsclBlock] = []
        for item in block.content:
            if isinstance(item, LsclAttribute):
                if item.name in self.attrs:
                    self.duplicates.append(item.name)
                self.attrs[item.name] = item.content
            elif isinstance(item, LsclBlock):
                self.sub_blocks.append(item)
            else:
                raise ValueError(f"unexpected {type(item).__name__} inside plugin {name}")

    @property
    def id(self) -> str | None:
        return self.attrs.get("id")

    def __repr__(self) -> str:
        return f"<{self.section} {self.name} id={self.id!r}>"


def plugins(tree) -> list[Plugin]:
    """Every plugin of every section, in config order (conditionals flattened)."""
    out: list[Plugin] = []

    def walk(section: str, content, conds: tuple):
        for item in content:
            if isinstance(item, LsclBlock):
                out.append(Plugin(section, item.name, item, conds))
            elif isinstance(item, LsclConditions):
                for cond, body in item.conditions:
                    walk(section, body, conds + (cond,))
                if item.default:
                    walk(section, item.default, conds + (("else", item.conditions),))
            else:
                raise ValueError(f"unexpected {type(item).__name__} at the level of section {section}")

    for top in tree:
        if not isinstance(top, LsclBlock) or top.name not in ("input", "filter", "output"):
            raise ValueError(f"unexpected top-level item {top!r}")
        walk(top.name, top.content, ())
    return out


def plugin_by_id(tree, plugin_id: str) -> Plugin:
    found = [p for p in plugins(tree) if p.id == plugin_id]
    if len(found) != 1:
        raise LookupError(f"expected exactly one plugin with id {plugin_id!r}, found {len(found)}")
    return found[0]


def env_ref(value: str) -> tuple[str, str | None] | None:
    """`${NAME}` / `${NAME:default}` -> (NAME, default or None); other strings -> None."""
    m = re.fullmatch(r"\$\{([A-Za-z_.][A-Za-z0-9_.]*)(?::([^}]*))?\}", value)
    if not m:
        return None
    return m.group(1), m.group(2)


def env_refs_in(value: Any) -> Iterator[tuple[str, str | None]]:
    if isinstance(value, str):
        for m in re.finditer(r"\$\{([A-Za-z_.][A-Za-z0-9_.]*)(?::([^}]*))?\}", value):
            yield m.group(1), m.group(2)
    elif isinstance(value, dict):
        for k, v in value.items():
            yield from env_refs_in(k)
            yield from env_refs_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from env_refs_in(v)


def resolve_default(value: str) -> str:
    """The value Logstash sees when no environment variable is set (defaults substituted)."""

    def sub(m):
        if m.group(2) is None:
            raise KeyError(f"{m.group(1)} has no default")
        return m.group(2)

    return re.sub(r"\$\{([A-Za-z_.][A-Za-z0-9_.]*)(?::([^}]*))?\}", sub, value)


def as_bool(value: Any) -> bool:
    if value in ("true", True):
        return True
    if value in ("false", False):
        return False
    raise ValueError(f"not a Logstash boolean: {value!r}")


def field_ref_path(ref: str) -> list[str]:
    """`[a][b]` or `a` -> ['a', 'b'] / ['a']."""
    if ref.startswith("["):
        parts = re.findall(r"\[([^\[\]]+)\]", ref)
        if "".join(f"[{p}]" for p in parts) != ref:
            raise ValueError(f"bad field reference {ref!r}")
        return parts
    if "[" in ref or "]" in ref:
        raise ValueError(f"bad field reference {ref!r}")
    return [ref]


def sprintf_field(template: str) -> list[str]:
    """`%{[event][id]}` -> ['event', 'id']; anything else is an error."""
    m = re.fullmatch(r"%\{([^}]+)\}", template)
    if not m:
        raise ValueError(f"{template!r} is not a single %{{field}} reference")
    return field_ref_path(m.group(1))


# --------------------------------------------------------------------------------------------
# Compose / .env
# --------------------------------------------------------------------------------------------
def load_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text(encoding="utf-8"))


def load_env(path: pathlib.Path = ENV_FILE) -> dict[str, str]:
    env: dict[str, str] = {}
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        m = re.fullmatch(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)", stripped)
        if not m:
            raise ValueError(f"{path}:{n}: not a KEY=value line: {line!r}")
        if m.group(1) in env:
            raise ValueError(f"{path}:{n}: {m.group(1)} set twice")
        env[m.group(1)] = m.group(2)
    return env


COMPOSE_VAR = re.compile(
    r"\$(?:\{(?P<braced>[A-Za-z_][A-Za-z0-9_]*)(?P<op>:?[-?+])?(?P<arg>[^}]*)\}|(?P<bare>[A-Za-z_][A-Za-z0-9_]*))"
)


def compose_variables(text: str) -> list[tuple[str, str | None, str]]:
    """(name, operator or None, argument) for every interpolation in a compose file ($$ skipped)."""
    out = []
    i = 0
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text[i] == "$":
            m = COMPOSE_VAR.match(text, i)
            if m:
                name = m.group("braced") or m.group("bare")
                out.append((name, m.group("op"), m.group("arg") or ""))
                i = m.end()
                continue
        i += 1
    return out


# --------------------------------------------------------------------------------------------
# RabbitMQ: topic matching and access control
# --------------------------------------------------------------------------------------------
def topic_matches(binding_key: str, routing_key: str) -> bool:
    """AMQP 0-9-1 topic matching: words split on '.', '*' one word, '#' zero or more words."""
    pattern = binding_key.split(".")
    words = routing_key.split(".")

    def match(pi: int, wi: int) -> bool:
        if pi == len(pattern):
            return wi == len(words)
        p = pattern[pi]
        if p == "#":
            return any(match(pi + 1, k) for k in range(wi, len(words) + 1))
        if wi == len(words):
            return False
        return (p == "*" or p == words[wi]) and match(pi + 1, wi + 1)

    return match(0, 0)


def routing_key_for(template: str, target: str) -> str:
    """The crate's default routing key for a target (docs/formats.md): `::` -> `.`, cut at 255 bytes."""
    key = template.replace("{target}", target.replace("::", "."))
    raw = key.encode("utf-8")
    if len(raw) > 255:
        key = raw[:255].decode("utf-8", errors="ignore")
    return key


# Which permission each AMQP operation needs on which resource (RabbitMQ access-control guide).
# The default exchange counts as the resource named "amq.default".
AMQP_OPERATION_NEEDS = {
    "exchange.declare": [("configure", "exchange")],
    "exchange.delete": [("configure", "exchange")],
    "queue.declare": [("configure", "queue")],
    "queue.delete": [("configure", "queue")],
    "queue.bind": [("write", "queue"), ("read", "exchange")],
    "queue.unbind": [("write", "queue"), ("read", "exchange")],
    "basic.publish": [("write", "exchange")],
    "basic.consume": [("read", "queue")],
    "basic.get": [("read", "queue")],
    "queue.purge": [("read", "queue")],
}


def permitted(permission: dict, operation: str, *, exchange: str | None = None,
              queue: str | None = None) -> bool:
    for kind, resource in AMQP_OPERATION_NEEDS[operation]:
        name = exchange if resource == "exchange" else queue
        if name is None:
            raise ValueError(f"{operation} needs a {resource} name")
        if name == "":
            name = "amq.default"
        regex = permission[kind]
        if regex == "" or not re.search(regex, name):
            return False
    return True


def pipeline_amqp_operations(rabbitmq_input: dict) -> list[tuple[str, dict]]:
    """What the Logstash rabbitmq input does on the broker, per inputs/rabbitmq.rb (setup!)."""
    queue = rabbitmq_input["queue"]
    ops: list[tuple[str, dict]] = []
    if not as_bool(rabbitmq_input.get("passive", "false")):
        ops.append(("queue.declare", {"queue": queue}))
    exchange = rabbitmq_input.get("exchange")
    if exchange:
        if rabbitmq_input.get("exchange_type"):
            ops.append(("exchange.declare", {"exchange": exchange}))
        ops.append(("queue.bind", {"queue": queue, "exchange": exchange}))
    ops.append(("basic.consume", {"queue": queue}))
    return ops


# --------------------------------------------------------------------------------------------
# Documents
# --------------------------------------------------------------------------------------------
def flatten(doc: dict, prefix: str = "") -> dict[str, Any]:
    """Leaf paths of a document, dotted (arrays are leaves)."""
    out: dict[str, Any] = {}
    for k, v in doc.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(flatten(v, path + "."))
        else:
            out[path] = v
    return out


def has_path(doc: dict, dotted: str) -> bool:
    """Whether `dotted` names a value in doc (nested objects or literal dotted keys)."""
    if dotted in doc:
        return True
    parts = dotted.split(".")
    for i in range(1, len(parts)):
        head = ".".join(parts[:i])
        if head in doc and isinstance(doc[head], dict) and has_path(doc[head], ".".join(parts[i:])):
            return True
    return False


def json_codec_decode(body: bytes) -> list[dict]:
    """What the Logstash json codec makes of a message body: one event per object, one per
    element of a top-level array. Anything else is an error here (Logstash would tag it
    _jsonparsefailure)."""
    value = json.loads(body.decode("utf-8"))
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list):
        if not all(isinstance(e, dict) for e in value):
            raise ValueError("array body with non-object elements")
        return list(value)
    raise ValueError(f"body is a JSON {type(value).__name__}, not an object or array")


# --------------------------------------------------------------------------------------------
# Model of the pipeline's filter section (the classic normalisation), driven by the field lists
# and maps parsed out of the pipeline itself.
# --------------------------------------------------------------------------------------------
class SetThroughScalar(Exception):
    """Setting [a][b] while [a] is a scalar: Logstash would fail on this event."""


def _get(doc: dict, path: list[str]):
    cur: Any = doc
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return None
        cur = cur[p]
    return cur


def _has(doc: dict, path: list[str]) -> bool:
    parent = _get(doc, path[:-1]) if len(path) > 1 else doc
    return isinstance(parent, dict) and path[-1] in parent


def _remove(doc: dict, path: list[str]):
    parent = _get(doc, path[:-1]) if len(path) > 1 else doc
    if isinstance(parent, dict):
        return parent.pop(path[-1], None)
    return None


def _set(doc: dict, path: list[str], value):
    cur = doc
    for p in path[:-1]:
        nxt = cur.get(p)
        if nxt is None:
            nxt = cur[p] = {}
        elif not isinstance(nxt, dict):
            raise SetThroughScalar(f"[{']['.join(path)}] while [{p}] is {nxt!r}")
        cur = nxt
    cur[path[-1]] = value


class NormalisationSpec:
    """The classic normalisation as the pipeline declares it."""

    def __init__(self, tree):
        detect = plugin_by_id(tree, "logcollect_detect_format")
        self.detect_code = detect.attrs["code"]
        settings = plugin_by_id(tree, "logcollect_classic_settings")
        add = settings.attrs["add_field"]
        self.classic_keys = [k.strip() for k in add["[@metadata][logcollect][classic_keys]"].split(",")]
        identity = add["[@metadata][logcollect][identity_keys]"]
        ref = env_ref(identity)
        self.identity_env = ref[0] if ref else None
        self.identity_keys = [k.strip() for k in resolve_default(identity).split(",") if k.strip()]
        self.copy = dict(plugin_by_id(tree, "logcollect_classic_service").attrs["copy"])
        self.rename = list(plugin_by_id(tree, "logcollect_classic_rename").attrs["rename"].items())
        level = plugin_by_id(tree, "logcollect_classic_level")
        self.level_replace = dict(level.attrs["replace"])
        cond = level.conditions[-1]
        if not (isinstance(cond, LsclEqualTo) and isinstance(cond.first, LsclSelector)):
            raise ValueError("logcollect_classic_level is not under an `if [field] == \"value\"`")
        self.level_condition = (cond.first.names, cond.second)
        self.remove_fields = list(plugin_by_id(tree, "logcollect_classic_drop").attrs["remove_field"])
        guard = plugin_by_id(tree, "logcollect_guard_ecs_objects").attrs["code"]
        m = re.search(r"\[((?:\s*'[^']+'\s*,?)+)\]\.each", guard)
        if not m:
            raise ValueError("cannot find the key list of logcollect_guard_ecs_objects")
        self.guard_keys = re.findall(r"'([^']+)'", m.group(1))
        app = plugin_by_id(tree, "logcollect_service_from_app_id")
        self.app_id_copy = dict(app.attrs["copy"])
        self.classic_plugins = [p for p in plugins(tree) if p.id and p.id.startswith("logcollect_classic_")]

    def is_classic(self, doc: dict) -> bool:
        # Mirrors logcollect_detect_format (the test checks the Ruby code names these fields).
        return ("@version" in doc or "event_id" in doc or "levelname" in doc
                or isinstance(doc.get("host"), str))

    def apply(self, doc: dict, properties: dict | None = None, identity_keys: list[str] | None = None,
              ruby=None) -> dict:
        """The event as it leaves the filter section (@metadata dropped, as the output does).

        `ruby`: None to use this module's Python rendering of the pipeline's ruby filters, or a
        callable (plugin_id, event, metadata) -> (event, metadata) that runs the real Ruby code
        (RubyRunner)."""
        doc = copy.deepcopy(doc)
        meta: dict = {"rabbitmq_properties": copy.deepcopy(properties or {})}
        identity = self.identity_keys if identity_keys is None else identity_keys
        if ruby:
            doc, meta = ruby("logcollect_detect_format", doc, meta)
            classic = meta["logcollect"]["format"] == "classic"
        else:
            classic = self.is_classic(doc)
        if classic:
            # logcollect_classic_settings (mutate add_field into @metadata)
            meta.setdefault("logcollect", {}).update(
                {"classic_keys": ",".join(self.classic_keys), "identity_keys": ",".join(identity)})
            # logcollect_classic_user_fields
            if ruby:
                doc, meta = ruby("logcollect_classic_user_fields", doc, meta)
            else:
                keep = set(self.classic_keys) | set(identity)
                moved = {k: doc.pop(k) for k in list(doc) if k not in keep}
                if moved:
                    doc["fields"] = moved
            # logcollect_classic_service (mutate copy)
            for src, dst in self.copy.items():
                if _has(doc, field_ref_path(src)):
                    _set(doc, field_ref_path(dst), copy.deepcopy(_get(doc, field_ref_path(src))))
            # logcollect_classic_labels
            if ruby:
                doc, meta = ruby("logcollect_classic_labels", doc, meta)
            else:
                for k in identity:
                    if k in doc:
                        v = doc.pop(k)
                        if v is not None:
                            _set(doc, ["labels", k], v if isinstance(v, str) else json.dumps(v))
            # logcollect_classic_rename (mutate rename: remove, then set; in config order)
            for src, dst in self.rename:
                sp = field_ref_path(src)
                if _has(doc, sp):
                    v = _remove(doc, sp)
                    _set(doc, field_ref_path(dst), v)
            # logcollect_classic_level
            path, expected = self.level_condition
            if _get(doc, path) == expected:
                for field, value in self.level_replace.items():
                    _set(doc, field_ref_path(field), value)
            # logcollect_classic_drop
            for field in self.remove_fields:
                _remove(doc, field_ref_path(field))
        # logcollect_guard_ecs_objects
        if ruby:
            doc, meta = ruby("logcollect_guard_ecs_objects", doc, meta)
        else:
            moved = {}
            for k in self.guard_keys:
                v = doc.get(k)
                if v is not None and not isinstance(v, dict):
                    moved[k] = doc.pop(k)
            if moved:
                f = doc.get("fields")
                doc["fields"] = {**(f if isinstance(f, dict) else {}), **moved}
        # logcollect_service_from_app_id: if ![service][name] and [@metadata][...][app-id]
        for src, dst in self.app_id_copy.items():
            sp = field_ref_path(src)
            v = _get({"@metadata": meta}, sp) if sp[0] == "@metadata" else _get(doc, sp)
            if v is not None and _get(doc, field_ref_path(dst)) is None:
                _set(doc, field_ref_path(dst), v)
        # logcollect_fallback_id: only when there is no [event][id] (a random id); the tests use
        # documents that have one.
        return doc


def pipeline_events(spec: "NormalisationSpec", body: bytes, properties: dict | None = None,
                    ruby=None) -> list[dict]:
    """A message body through the pipeline model: the rabbitmq input's json codec splits it
    into events (an array body: one event per element, in order), then each event goes through
    the filter section on its own, with the message's AMQP properties as its metadata."""
    return [spec.apply(doc, properties, ruby=ruby) for doc in json_codec_decode(body)]


class RubyRunner:
    """Runs a ruby filter of the pipeline (its init and code, verbatim) with ruby_filter_harness.rb."""

    HARNESS = ELK_TESTS / "ruby_filter_harness.rb"

    def __init__(self, tree, ruby: str):
        self.ruby = ruby
        self.filters = {p.id: p.attrs for p in plugins(tree) if p.name == "ruby"}

    def __call__(self, plugin_id: str, event: dict, metadata: dict) -> tuple[dict, dict]:
        attrs = self.filters[plugin_id]
        payload = {"init": attrs.get("init"), "code": attrs["code"], "event": event, "metadata": metadata}
        proc = subprocess.run([self.ruby, str(self.HARNESS)], input=json.dumps(payload),
                              capture_output=True, text=True, timeout=120)
        if proc.returncode != 0:
            raise RuntimeError(f"ruby filter {plugin_id} failed:\n{proc.stderr}")
        out = json.loads(proc.stdout)
        return out["event"], out["metadata"]


# --------------------------------------------------------------------------------------------
# The crate's real output (examples/sample_documents.rs)
# --------------------------------------------------------------------------------------------
def crate_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The process environment without any LOGCOLLECT_* variable the crate would read, plus extra."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("LOGCOLLECT_") or k.startswith("LOGCOLLECT_TEST_")}
    env.update(extra or {})
    return env


def run_sample_documents(publish: bool = False, extra_env: dict[str, str] | None = None,
                         hang_guard_seconds: int = 1800) -> tuple[dict, subprocess.CompletedProcess]:
    cmd = ["cargo", "run", "-q", "--features", "internals", "--example", "sample_documents"]
    if publish:
        cmd += ["--", "--publish"]
    proc = subprocess.run(cmd, cwd=ROOT, env=crate_env(extra_env), capture_output=True, text=True,
                          timeout=hang_guard_seconds)
    if proc.returncode != 0:
        raise RuntimeError(
            f"`{' '.join(cmd)}` exited {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}")
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if len(lines) != 1:
        raise RuntimeError(f"`{' '.join(cmd)}` printed {len(lines)} lines, expected one JSON line:\n{proc.stdout}")
    return json.loads(lines[0]), proc


# --------------------------------------------------------------------------------------------
# Real documents of the `web` example (examples/web.rs, cargo feature `http`)
# --------------------------------------------------------------------------------------------
WEB_TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


def _web_binary(hang_guard_seconds: int) -> pathlib.Path:
    """Builds the web example and returns its path (as cargo reports it)."""
    cmd = ["cargo", "build", "-q", "--features", "http", "--example", "web", "--message-format=json"]
    proc = subprocess.run(cmd, cwd=ROOT, env=crate_env(), capture_output=True, text=True,
                          timeout=hang_guard_seconds)
    if proc.returncode != 0:
        raise RuntimeError(f"`{' '.join(cmd)}` exited {proc.returncode}:\n{proc.stderr}")
    for line in proc.stdout.splitlines():
        msg = json.loads(line)
        if msg.get("reason") == "compiler-artifact" and msg.get("executable") \
                and msg["target"]["name"] == "web":
            return pathlib.Path(msg["executable"])
    raise RuntimeError("cargo built no `web` executable")


def run_web_documents(amqp_url: str, hang_guard_seconds: int = 1800) -> list[dict]:
    """Starts the web example publishing to a test-unique exchange (a queue of ours bound to it
    with pika), sends GET /hello (with a traceparent), GET /fail and GET /panic over real HTTP,
    and returns every document it shipped (the json codec's view of each message)."""
    import signal
    import urllib.error
    import urllib.request
    import uuid

    import pika

    binary = _web_binary(hang_guard_seconds)
    exchange = f"logcollect-elktest-web-{uuid.uuid4().hex[:12]}"
    conn = pika.BlockingConnection(pika.URLParameters(amqp_url))
    proc = None
    try:
        ch = conn.channel()
        ch.exchange_declare(exchange, exchange_type="topic", durable=True)
        queue = ch.queue_declare("", exclusive=True).method.queue
        ch.queue_bind(queue, exchange, routing_key="#")
        proc = subprocess.Popen(
            [str(binary), "--listen", "127.0.0.1:0", "--jobs-queue", f"{exchange}-jobs"],
            cwd=ROOT, env=crate_env({"LOGCOLLECT_BROKER_URI": amqp_url, "LOGCOLLECT_EXCHANGE": exchange}),
            stdout=subprocess.PIPE, text=True)
        line = proc.stdout.readline() if proc.stdout else ""
        if not line.startswith("listening on http://"):
            raise RuntimeError(f"the web example did not start: {line!r}")
        base = line.strip().removeprefix("listening on ")
        for path, headers in (("/hello", {"traceparent": WEB_TRACEPARENT}), ("/fail", {}), ("/panic", {})):
            req = urllib.request.Request(base + path, headers=headers)
            try:
                urllib.request.urlopen(req, timeout=30).read()
            except urllib.error.HTTPError as e:
                if e.code != 500:
                    raise
        docs: list[dict] = []
        deadline = time_monotonic() + 60
        # /hello: access + 2 handler events; /fail: access + handler; /panic: access + hook.
        while len(docs) < 7 and time_monotonic() < deadline:
            method, _, body = ch.basic_get(queue, auto_ack=True)
            if method is None:
                conn.sleep(0.05)
                continue
            docs.extend(json_codec_decode(body))
        return docs
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.kill()
        try:
            ch = conn.channel()
            ch.exchange_delete(exchange)
        finally:
            conn.close()


def time_monotonic() -> float:
    import time
    return time.monotonic()
