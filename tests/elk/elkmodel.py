"""Helpers for the ELK checks: repository paths, parsers for the stack's files, the plugin option
lists, a model of RabbitMQ's access control, the pipeline run as Logstash runs it (LogstashModel,
with ruby_filter_harness.rb) and the indexed shape docs/formats.md promises (expected_indexed).

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
# One pipeline per transport: that transport's input file + the shared filters and output
# (pipelines.yml loads input/ and shared/; compose mounts the transport's directory as input/).
SHARED_PIPELINE = PIPELINE_DIR / "shared" / "filter-output.conf"
PIPELINE_INPUTS = {"amqp": PIPELINE_DIR / "amqp" / "input.conf", "redis": PIPELINE_DIR / "redis" / "input.conf"}
AMQP_INPUT = PIPELINE_INPUTS["amqp"]
REDIS_INPUT = PIPELINE_INPUTS["redis"]
TRANSPORTS = tuple(PIPELINE_INPUTS)
# The compose service that runs each transport's pipeline.
LOGSTASH_SERVICES = {"amqp": "logstash", "redis": "logstash-redis"}
LOGSTASH_YML = ROOT / "logstash" / "config" / "logstash.yml"
PIPELINES_YML = ROOT / "logstash" / "config" / "pipelines.yml"
NDJSON = ROOT / "kibana" / "logcollect.ndjson"
KIBANA_GENERATOR = ROOT / "kibana" / "generate.py"
SETUP_ES = COMPOSE_DIR / "setup" / "setup-elasticsearch.sh"
IMPORT_KIBANA = COMPOSE_DIR / "setup" / "import-kibana-objects.sh"
CLASSIC_RS = ROOT / "src" / "encoding" / "classic.rs"
SAMPLE_EXAMPLE = ROOT / "tools" / "sample_documents.rs"
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

# logstash-input-redis 3.7 (lib/logstash/inputs/redis.rb and the 3.7.1 docs; `threads` from the
# plugin reference's option table).
REDIS_INPUT_OPTIONS = {
    "host", "port", "path", "db", "timeout", "password", "ssl", "key", "data_type", "batch_count",
    "command_map", "threads",
}
# The redis list the crate pushes to unless LOGCOLLECT_REDIS__KEY says otherwise (issue 20's
# contract; sample_documents reports it as `redis_key` once the crate has it).
CRATE_REDIS_KEY_DEFAULT = "logstash"
# The batch read of logstash-input-redis 3.7 (load_batch_script / list_batch_listener): EVALSHA of
# this script with KEYS = [key], ARGV = [batch_count - 1]; empty answer: sleep 0.25 s.
REDIS_INPUT_BATCH_SCRIPT = """
      local batchsize = tonumber(ARGV[1])
      local result = redis.call('lrange', KEYS[1], 0, batchsize)
      redis.call('ltrim', KEYS[1], batchsize + 1, -1)
      return result
"""

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
    ("input", "redis"): REDIS_INPUT_OPTIONS,
    ("filter", "mutate"): MUTATE_OPTIONS,
    ("filter", "ruby"): RUBY_OPTIONS,
    ("output", "elasticsearch"): ES_OUTPUT_DATA_STREAM_OPTIONS,
}
CODECS = {"json": JSON_CODEC_OPTIONS}
# Options whose (environment-resolved) value must be a whole number.
NUMBER_OPTIONS = {
    ("input", "rabbitmq"): {"port", "prefetch_count", "threads", "connect_retry_interval", "heartbeat",
                            "connection_timeout", "subscription_retry_interval_seconds"},
    ("input", "redis"): {"port", "db", "timeout", "batch_count", "threads"},
}

BOOLEAN_OPTIONS = {
    ("input", "rabbitmq"): {"ssl", "automatic_recovery", "passive", "durable", "auto_delete",
                            "exclusive", "ack"},
    ("input", "redis"): {"ssl"},
    ("output", "elasticsearch"): {"ssl_enabled", "sniffing", "http_compression",
                                  "data_stream_sync_fields", "data_stream_auto_routing",
                                  "dlq_on_failed_indexname_interpolation"},
}
ENUM_OPTIONS = {
    ("input", "rabbitmq", "metadata_enabled"): {"none", "basic", "extended", "false", "true"},
    ("input", "rabbitmq", "exchange_type"): {"fanout", "direct", "topic", "headers",
                                              "x-consistent-hash", "x-modulus-hash"},
    ("input", "redis", "data_type"): {"list", "channel", "pattern_channel"},
    ("output", "elasticsearch", "data_stream"): {"true", "false", "auto"},
    ("output", "elasticsearch", "data_stream_type"): {"logs", "metrics", "synthetics", "traces"},
    ("output", "elasticsearch", "action"): {"create"},
}


# --------------------------------------------------------------------------------------------
# Logstash config: parsing and walking
# --------------------------------------------------------------------------------------------
def expand_braces(pattern: str) -> list[str]:
    """`a/{x,y}/*.conf` -> ['a/x/*.conf', 'a/y/*.conf'] (the `{p,q}` of Logstash's globs)."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    return [e for alt in m.group(1).split(",")
            for e in expand_braces(pattern[:m.start()] + alt + pattern[m.end():])]


def pipeline_files(transport: str, compose: dict | None = None) -> list[tuple[str, pathlib.Path]]:
    """(path in the container, file in the repository) of every file the transport's Logstash
    service loads, in Logstash's order (sorted): pipelines.yml's path.config, globbed through the
    service's bind mounts."""
    compose = load_compose() if compose is None else compose
    service = compose["services"][LOGSTASH_SERVICES[transport]]
    entries = yaml.safe_load(PIPELINES_YML.read_text(encoding="utf-8"))
    if len(entries) != 1:
        raise ValueError(f"pipelines.yml: one pipeline expected, found {len(entries)}")
    mounts = []
    for v in service.get("volumes", []):
        source, target = v.split(":")[:2]
        if source.startswith("."):
            mounts.append((target.rstrip("/"), (COMPOSE_DIR / source).resolve()))
    found: dict[str, pathlib.Path] = {}
    for pattern in expand_braces(entries[0]["path.config"]):
        holder = max((m for m in mounts if pattern.startswith(m[0] + "/")), key=lambda m: len(m[0]), default=None)
        if holder is None:
            raise LookupError(f"{LOGSTASH_SERVICES[transport]}: nothing mounted under {pattern}")
        rest = pattern[len(holder[0]) + 1:]
        matched = sorted(p for p in holder[1].glob(rest) if p.is_file())
        if not matched:
            raise LookupError(f"{LOGSTASH_SERVICES[transport]}: {pattern} matches no file")
        for p in matched:
            found[f"{holder[0]}/{p.relative_to(holder[1]).as_posix()}"] = p
    return sorted(found.items())


def parse_files(paths) -> list:
    """The pipeline Logstash builds from these files: their text concatenated, in this order."""
    return parse_lscl("\n".join(pathlib.Path(p).read_text(encoding="utf-8") for p in paths))


def parse_pipeline(transport: str = "amqp"):
    """The whole pipeline (input, filters, output) the transport's Logstash service runs."""
    return parse_files(p for _, p in pipeline_files(transport))


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
QUEUE_TYPE_VAR = "LCSTACK_QUEUE_TYPE"
CLUSTER_CONF = COMPOSE_DIR / "rabbitmq" / "cluster.conf"


def render_default_queue_type() -> str:
    """The queue type render-definitions.sh uses when LCSTACK_QUEUE_TYPE is not set."""
    found = re.search(r': "\$\{' + QUEUE_TYPE_VAR + r':=([a-z]+)\}"', RENDER_DEFINITIONS.read_text())
    if not found:
        raise LookupError(f"render-definitions.sh sets no default for {QUEUE_TYPE_VAR}")
    return found.group(1)


def definitions_with_queue_type(queue_type: str | None = None) -> dict:
    """definitions.json with the queue type rendered (as render-definitions.sh does; passwords
    stay placeholders): the script's default unless `queue_type` is given."""
    text = DEFINITIONS.read_text(encoding="utf-8")
    return json.loads(text.replace("${" + QUEUE_TYPE_VAR + "}", queue_type or render_default_queue_type()))


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


def crate_documents(body: bytes) -> list[dict]:
    """The documents of a body the crate published (an object, or an array of objects), for the
    broker-level checks. What Logstash's json codec makes of any body (parse failures included)
    is modelled with the real event in ruby_filter_harness.rb (LogstashModel.decode)."""
    value = json.loads(body.decode("utf-8"))
    if isinstance(value, dict):
        return [value]
    if isinstance(value, list) and all(isinstance(e, dict) for e in value):
        return list(value)
    raise ValueError(f"the crate never publishes this body: {body[:80]!r}")


def _get(doc: dict, path: list[str]):
    """Value at a path of a plain document (None when absent)."""
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
    return parent.pop(path[-1], None) if isinstance(parent, dict) else None


# --------------------------------------------------------------------------------------------
# Java HashMap iteration order. The entries of one hash option (mutate `rename => {...}`) may
# not run in the order written: logstash-core's lscl.rb builds a Ruby Hash (insertion order) and
# wraps it in the Java IR (ValueExpression); CompiledPipeline hands Ruby plugins that stored
# object (convertArgs) and Java plugins a `new HashMap<>()` copy (expandConfigVariables). Which
# Java type the Ruby Hash becomes on its way into the IR was not settled from the sources, so
# the checks run in HashMap order, in the written order and reversed, and the conf must not
# depend on it.
# --------------------------------------------------------------------------------------------
def java_string_hash(s: str) -> int:
    """java.lang.String.hashCode (UTF-16 code units, 32-bit signed overflow)."""
    h = 0
    units = s.encode("utf-16-be")
    for i in range(0, len(units), 2):
        h = (31 * h + int.from_bytes(units[i:i + 2], "big")) & 0xFFFFFFFF
    return h - (1 << 32) if h >= 1 << 31 else h


def java_hashmap_order(keys: list[str]) -> list[str]:
    """Iteration order of a java.util.HashMap filled with `keys` in that order (JDK 8+: spread
    h ^ (h >>> 16), bucket hash & (n - 1), table 16 doubled while size > 0.75 n, entries of one
    bucket in insertion order; treeified buckets only from 8 entries, not reached here)."""
    n = 16
    while len(keys) > 0.75 * n:
        n *= 2
    buckets: dict[int, list[str]] = {}
    for k in keys:
        h = java_string_hash(k) & 0xFFFFFFFF
        spread = h ^ (h >> 16)
        bucket = buckets.setdefault(spread & (n - 1), [])
        if len(bucket) >= 8:
            raise NotImplementedError("a treeified HashMap bucket is not modelled")
        if k not in bucket:
            bucket.append(k)
    return [k for b in sorted(buckets) for k in buckets[b]]


def hash_order(mapping: dict, order: str) -> list[tuple[str, Any]]:
    """The entries of a plugin hash option in the order `order` says: "java" (HashMap),
    "written" (the config text's order, a Ruby Hash) or "reversed"."""
    if order == "written":
        return list(mapping.items())
    if order == "java":
        return [(k, mapping[k]) for k in java_hashmap_order(list(mapping))]
    if order == "reversed":  # for checks that must hold in any order
        return list(reversed(mapping.items()))
    raise ValueError(order)


# --------------------------------------------------------------------------------------------
# The pipeline, run as Logstash runs it: the input's codec and decoration, then the filter
# section of the parsed config walked in order (conditions evaluated on the event, ruby filters
# executed by real Ruby, mutate by Logstash's rules), then what the elasticsearch output makes
# of the event. Nothing here re-states what the pipeline does: it all comes from the config.
# --------------------------------------------------------------------------------------------
class UnsupportedConstruct(Exception):
    """The config uses a condition, plugin or option the model does not implement."""


class FieldSetError(Exception):
    """Logstash's InvalidFieldSetException: setting [a][b] while [a] is not a map."""


def _ref_root(event: dict, ref: str) -> tuple[dict, list[str]]:
    path = field_ref_path(ref)
    if path[0] == "@metadata":
        return event["metadata"], path[1:]
    return event["data"], path


def ev_get(event: dict, ref: str):
    root, path = _ref_root(event, ref)
    cur: Any = root
    for p in path:
        if not isinstance(cur, dict) or p not in cur:
            return None
        cur = cur[p]
    return copy.deepcopy(cur)


def ev_include(event: dict, ref: str) -> bool:
    root, path = _ref_root(event, ref)
    if not path:
        return True
    cur: Any = root
    for p in path[:-1]:
        if not isinstance(cur, dict) or p not in cur:
            return False
        cur = cur[p]
    return isinstance(cur, dict) and path[-1] in cur


def ev_set(event: dict, ref: str, value):
    root, path = _ref_root(event, ref)
    if path == ["@timestamp"] and root is event["data"] and not isinstance(value, str):
        raise FieldSetError("@timestamp must be a timestamp")
    cur = root
    for p in path[:-1]:
        if cur.get(p) is None:
            cur[p] = {}
        if not isinstance(cur[p], dict):
            raise FieldSetError(f"cannot set {ref}: [{p}] is {cur[p]!r}")
        cur = cur[p]
    cur[path[-1]] = copy.deepcopy(value)


def ev_remove(event: dict, ref: str):
    root, path = _ref_root(event, ref)
    cur: Any = root
    for p in path[:-1]:
        if not isinstance(cur, dict) or p not in cur:
            return None
        cur = cur[p]
    return cur.pop(path[-1], None) if isinstance(cur, dict) else None


def ev_tag(event: dict, tag: str):
    tags = event["data"].get("tags")
    if tags is None:
        event["data"]["tags"] = [tag]
    elif isinstance(tags, list):
        if tag not in tags:
            tags.append(tag)
    elif tags != tag:
        event["data"]["tags"] = [tags, tag]


def ev_sprintf(event: dict, template: str) -> str:
    def sub(m):
        v = ev_get(event, m.group(1))
        if v is None:
            return m.group(0)
        return json.dumps(v) if isinstance(v, (dict, list)) else str(v)
    return re.sub(r"%\{([^}]+)\}", sub, template)


def substitute_env(value: Any, env: dict[str, str], strict: bool = True) -> Any:
    """${VAR} / ${VAR:default} in every string of a plugin's options, as Logstash does at load.
    `strict`: a variable without value or default is an error (else it stays as written: the
    input's and output's secrets, which nothing here uses)."""
    if isinstance(value, str):
        def sub(m):
            if m.group(1) in env:
                return env[m.group(1)]
            if m.group(2) is None:
                if strict:
                    raise KeyError(f"${{{m.group(1)}}} has no value and no default")
                return m.group(0)
            return m.group(2)
        return re.sub(r"\$\{([A-Za-z_.][A-Za-z0-9_.]*)(?::([^}]*))?\}", sub, value)
    if isinstance(value, dict):
        return {substitute_env(k, env, strict): substitute_env(v, env, strict) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute_env(v, env, strict) for v in value]
    return value


def evaluate(cond, event: dict) -> bool:
    """A condition of the filter section, as Logstash's EventCondition evaluates it. Only the
    constructs the pipeline uses: `[field]` (truthy: present, not null, not false), `[field] ==
    "string"`, `and`, `!`. Anything else raises, so a new construct cannot pass unmodelled."""
    if isinstance(cond, LsclSelector):
        v = ev_get(event, "".join(f"[{n}]" for n in cond.names))
        return v is not None and v is not False
    if isinstance(cond, LsclEqualTo):
        if not (isinstance(cond.first, LsclSelector) and isinstance(cond.second, str)):
            raise UnsupportedConstruct(f"== other than [field] == \"string\": {cond!r}")
        return ev_get(event, "".join(f"[{n}]" for n in cond.first.names)) == cond.second
    if isinstance(cond, LsclAnd):
        return all(evaluate(c, event) for c in cond.conditions)
    if isinstance(cond, LsclNot):
        return not evaluate(cond.condition, event)
    raise UnsupportedConstruct(f"condition {type(cond).__name__} is not modelled: {cond!r}")


# logstash-filter-mutate 3.5 (lib/logstash/filters/mutate.rb, `filter`): the operations of one
# block run in this order, whatever the order written; the first failure tags _mutate_error and
# skips the rest of the block, common options included.
MUTATE_ORDER = ["coerce", "rename", "update", "replace", "convert", "gsub", "uppercase", "capitalize",
                "lowercase", "strip", "split", "join", "merge", "copy"]
# LogStash::Filters::Base#filter_matched, after a successful filter.
COMMON_FILTER_ORDER = ["add_field", "remove_field", "add_tag", "remove_tag"]


def _mutate(attrs: dict, event: dict, order: str):
    for op in MUTATE_ORDER:
        if op not in attrs:
            continue
        entries = hash_order(attrs[op], order)
        if op == "rename":
            for old, new in entries:
                old, new = ev_sprintf(event, old), ev_sprintf(event, new)
                if ev_include(event, old):
                    ev_set(event, new, ev_remove(event, old))
        elif op == "update":
            for field, value in entries:
                if ev_include(event, field):
                    ev_set(event, field, ev_sprintf(event, value))
        elif op == "replace":
            for field, value in entries:
                ev_set(event, field, ev_sprintf(event, value))
        elif op == "copy":
            for src, dst in entries:
                v = ev_get(event, src)
                if v is not None:
                    ev_set(event, dst, v)
        else:
            raise UnsupportedConstruct(f"mutate {op} is not modelled")


def _filter_matched(attrs: dict, event: dict, order: str):
    for op in COMMON_FILTER_ORDER:
        if op not in attrs:
            continue
        if op == "add_field":
            # LogStash::Util::Decorators.add_fields: an existing value becomes an array.
            for field, value in hash_order(attrs[op], order):
                field, new = ev_sprintf(event, field), ev_sprintf(event, value)
                old = ev_get(event, field)
                ev_set(event, field, new if old is None else (old if isinstance(old, list) else [old]) + [new])
        elif op == "remove_field":
            for field in attrs[op]:
                ev_remove(event, ev_sprintf(event, field))
        elif op == "add_tag":
            for tag in attrs[op]:
                ev_tag(event, ev_sprintf(event, tag))
        else:
            raise UnsupportedConstruct(f"common option {op} is not modelled")


class LogstashModel:
    """The pipeline as Logstash runs it, read from the parsed config `tree`.

    `ruby`: path of the ruby executable (ruby_filter_harness.rb runs the codec, the event and
    each ruby filter's init and code verbatim). `hash_order`: "java" or "written", the order the
    entries of a hash option run in. `settings`: the effective pipeline settings (logstash.yml
    overridden by the pipeline's pipelines.yml entry); `env`: the environment Logstash sees."""

    HARNESS = ELK_TESTS / "ruby_filter_harness.rb"

    def __init__(self, tree, ruby: str, *, hash_order: str = "java", settings: dict | None = None,
                 env: dict[str, str] | None = None):
        self.tree = tree
        self.ruby = ruby
        self.hash_order = hash_order
        self.settings = effective_settings() if settings is None else settings
        self.env = env or {}
        # Logstash joins the sections of every file: the filters run in file order.
        self.filter_section = [item for b in tree if isinstance(b, LsclBlock) and b.name == "filter"
                               for item in b.content]
        inputs = [p for p in plugins(tree) if p.section == "input"]
        if len(inputs) != 1 or inputs[0].name not in ("rabbitmq", "redis"):
            raise UnsupportedConstruct(f"one rabbitmq or redis input expected, found {inputs}")
        self.input_name = inputs[0].name
        self.input = substitute_env(inputs[0].attrs, self.env, strict=False)
        decorations = {"add_field", "tags", "type"} & set(self.input)
        if decorations:
            raise UnsupportedConstruct(f"input decoration {sorted(decorations)} is not modelled")
        outputs = [p for p in plugins(tree) if p.section == "output"]
        if len(outputs) != 1 or outputs[0].name != "elasticsearch":
            raise UnsupportedConstruct(f"one elasticsearch output expected, found {outputs}")
        self.output = substitute_env(outputs[0].attrs, self.env, strict=False)
        self.ran: list[str] = []  # plugin ids, in the order they ran (last event)
        self._proc: subprocess.Popen | None = None

    # --- input ---------------------------------------------------------------------------
    def codec_options(self) -> dict:
        # Both inputs default to json (rabbitmq: codec default; redis: `default :codec, "json"`).
        codec = self.input.get("codec", "json")
        if codec not in ("json", "plain"):
            raise UnsupportedConstruct(f"codec {codec!r}")
        ecs = self.settings.get("pipeline.ecs_compatibility", "v8")
        # codec-json 3.1 / codec-plain 3.1: in ECS mode (v1, v8) a body that is one event gets
        # [event][original].
        return {"name": codec, "original_field": None if ecs == "disabled" else "[event][original]",
                "target": None}

    def decode(self, body: bytes, properties: dict | None) -> list[dict]:
        """The input: the codec, then (rabbitmq, metadata_enabled basic) the AMQP properties in
        [@metadata][rabbitmq_properties] on every event of the message. The redis input decodes
        each list value alone and adds nothing (`queue_event`: codec, decorate)."""
        if self.input_name == "redis":
            if properties is not None:
                raise ValueError("a Redis list value has no AMQP properties")
            props = None
        else:
            props = properties if self.input.get("metadata_enabled") in ("basic", "extended", "true") else None
        return self._harness({"op": "decode", "body": body.decode("utf-8"), "codec": self.codec_options(),
                              "properties": props})

    def redis_read(self, client) -> list[list[bytes]]:
        """What the redis input takes off the list until it is empty, batch by batch, as
        logstash-input-redis 3.7 does it (list_batch_listener: EVALSHA of its LRANGE+LTRIM script
        with batch_count - 1; list_single_listener: BLPOP with a 1 s timeout when batch_count is 1).
        `client`: a redis-py client of the server the input's host/port/db name."""
        if self.input_name != "redis" or self.input.get("data_type") != "list":
            raise UnsupportedConstruct("only the redis input with data_type => list reads a list")
        key = self.input["key"]
        count = int(self.input.get("batch_count", "125"))
        batches: list[list[bytes]] = []
        if count > 1:
            sha = client.script_load(REDIS_INPUT_BATCH_SCRIPT)
            while True:
                batch = client.evalsha(sha, 1, key, count - 1)
                if not batch:
                    return batches
                batches.append(list(batch))
        while True:
            item = client.blpop([key], timeout=1)
            if item is None:
                return batches
            batches.append([item[1]])

    # --- filter --------------------------------------------------------------------------
    def filter(self, event: dict) -> dict:
        event = copy.deepcopy(event)
        self.ran = []
        self._walk(self.filter_section, event)
        return event

    def _walk(self, content, event: dict):
        for item in content:
            if isinstance(item, LsclBlock):
                self._run_plugin(item, event)
            elif isinstance(item, LsclConditions):
                for cond, body in item.conditions:
                    if evaluate(cond, event):
                        self._walk(body, event)
                        break
                else:
                    if item.default:
                        self._walk(item.default, event)
            else:
                raise UnsupportedConstruct(f"{type(item).__name__} in the filter section")

    def _run_plugin(self, block: LsclBlock, event: dict):
        p = Plugin("filter", block.name, block, ())
        attrs = substitute_env(p.attrs, self.env)
        self.ran.append(attrs.get("id"))
        if block.name == "mutate":
            try:
                _mutate(attrs, event, self.hash_order)
                _filter_matched(attrs, event, self.hash_order)
            except FieldSetError:
                ev_tag(event, attrs.get("tag_on_failure", "_mutate_error"))
        elif block.name == "ruby":
            if "path" in attrs:
                raise UnsupportedConstruct("ruby filter with path")
            out = self._harness({"op": "filter", "id": attrs.get("id"), "init": attrs.get("init"), "code": attrs["code"],
                                 "event": event, "tag_on_exception": attrs.get("tag_on_exception")})
            [new] = out
            event.clear()
            event.update(new)
            if "_rubyexception" not in (event["data"].get("tags") or []):
                _filter_matched(attrs, event, self.hash_order)
        else:
            raise UnsupportedConstruct(f"filter plugin {block.name}")

    def _harness(self, payload: dict) -> list[dict]:
        """One request to the Ruby harness (one process per model, started on first use)."""
        if self._proc is None or self._proc.poll() is not None:
            self._proc = subprocess.Popen([self.ruby, str(self.HARNESS)], stdin=subprocess.PIPE,
                                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._proc.stdin.write(json.dumps(payload) + "\n")
        self._proc.stdin.flush()
        line = self._proc.stdout.readline()
        if not line:
            self._proc.stdin.close()
            err = self._proc.stderr.read()
            self._proc.wait()
            raise RuntimeError(f"ruby_filter_harness.rb {payload['op']} failed:\n{err}")
        return json.loads(line)["events"]

    def close(self):
        if self._proc is not None:
            self._proc.stdin.close()
            self._proc.wait(timeout=60)
            self._proc = None

    # --- output --------------------------------------------------------------------------
    def index_request(self, event: dict) -> tuple[str, str, dict]:
        """What the elasticsearch output sends for an event in data-stream mode (output 11.22,
        data_stream_support.rb): ("create", data stream, document). With auto routing (the
        default) the event's data_stream.* fields choose the data stream; with sync_fields (the
        default) the document's data_stream.* is rewritten to the configured stream."""
        o = self.output
        if o.get("data_stream") != "true":
            raise UnsupportedConstruct("only data_stream => true is modelled")
        doc = copy.deepcopy(event["data"])
        configured = {k: o.get(f"data_stream_{k}", d) for k, d in
                      (("type", "logs"), ("dataset", "generic"), ("namespace", "default"))}
        auto = as_bool(o.get("data_stream_auto_routing", "true"))
        ds = doc.get("data_stream")
        if as_bool(o.get("data_stream_sync_fields", "true")):
            if isinstance(ds, dict):
                if not auto:
                    for k in configured:
                        if k in ds and ds[k] != configured[k]:
                            ds[k] = None
            else:
                ds = doc["data_stream"] = {}
            for k, v in configured.items():
                ds[k] = ds.get(k) or v
        routed = configured
        if auto and isinstance(doc.get("data_stream"), dict):
            routed = {k: doc["data_stream"].get(k) or v for k, v in configured.items()}
        return "create", f"{routed['type']}-{routed['dataset']}-{routed['namespace']}", doc

    def document_id(self, event: dict) -> str:
        return ev_sprintf(event, self.output["document_id"])

    # --- all of it -----------------------------------------------------------------------
    def run(self, body: bytes, properties: dict | None = None) -> list[dict]:
        """A message through input, filters: the events as the output receives them."""
        return [self.filter(e) for e in self.decode(body, properties)]

    def indexed(self, body: bytes, properties: dict | None = None) -> list[dict]:
        """The documents Elasticsearch is asked to create (data_stream fields of the output
        removed: they are the output's, checked on their own)."""
        out = []
        for event in self.run(body, properties):
            _, stream, doc = self.index_request(event)
            if stream != self.own_stream():
                raise AssertionError(f"event routed to {stream}, not {self.own_stream()}")
            doc.pop("data_stream")
            out.append(doc)
        return out

    def own_stream(self) -> str:
        o = self.output
        return f"{o['data_stream_type']}-{o['data_stream_dataset']}-{o['data_stream_namespace']}"


def effective_settings(pipeline_id: str = "logcollect") -> dict:
    """logstash.yml, overridden by the pipeline's entry in pipelines.yml (as Logstash does)."""
    settings = dict(yaml.safe_load(LOGSTASH_YML.read_text(encoding="utf-8")))
    for entry in yaml.safe_load(PIPELINES_YML.read_text(encoding="utf-8")):
        if entry.get("pipeline.id") == pipeline_id:
            settings.update(entry)
    return settings


class PipelineFacts:
    """What the checks need to know of the conf's classic normalisation (read from it, never
    re-implemented): the reserved keys, the identity keys, every rename and removal."""

    def __init__(self, tree):
        ps = plugins(tree)
        settings = plugin_by_id(tree, "logcollect_classic_settings")
        add = settings.attrs["add_field"]
        self.classic_keys = [k.strip() for k in add["[@metadata][logcollect][classic_keys]"].split(",")]
        identity = add["[@metadata][logcollect][identity_keys]"]
        ref = env_ref(identity)
        self.identity_env = ref[0] if ref else None
        self.identity_keys = [k.strip() for k in resolve_default(identity).split(",") if k.strip()]
        self.rename = [(src, dst) for p in ps if p.name == "mutate" and "rename" in p.attrs
                       for src, dst in p.attrs["rename"].items()]
        self.remove_fields = [f for p in ps if p.name == "mutate" for f in p.attrs.get("remove_field", [])]
        self.detect_code = plugin_by_id(tree, "logcollect_detect_format").attrs["code"]


# --------------------------------------------------------------------------------------------
# The crate's real output (tools/sample_documents.rs)
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
            docs.extend(crate_documents(body))
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


# --------------------------------------------------------------------------------------------
# Expectations: the indexed shape docs/formats.md promises ("What Logstash indexes"), built from
# its table and rules, independently of the conf.
# --------------------------------------------------------------------------------------------
FORMATS_MD = ROOT / "docs" / "formats.md"


def formats_md_classic_table() -> dict[str, Any]:
    """{classic key: dotted ECS path | "unchanged" | "dropped"} from the table of formats.md."""
    text = FORMATS_MD.read_text(encoding="utf-8")
    head = "| classic key | indexed as |"
    if head not in text:
        raise LookupError("docs/formats.md lost its classic -> indexed table")
    rows = text[text.index(head):].split("\n\n", 1)[0].splitlines()[2:]
    out: dict[str, Any] = {}
    for row in rows:
        left, right = [c.strip() for c in row.strip().strip("|").split("|")]
        keys = re.findall(r"`([^`]+)`", left)
        if right in ("unchanged", "dropped"):
            out.update({k: right for k in keys})
            continue
        if not left.startswith("`") or right.startswith("also"):
            continue  # rules, applied by expected_indexed
        targets = re.findall(r"`([^`]+)`", right.split("(")[0])
        if len(targets) != len(keys):
            raise ValueError(f"formats.md row {row!r}: {len(keys)} keys, {len(targets)} targets")
        out.update(dict(zip(keys, targets)))
    return out


def _set_dotted(doc: dict, dotted: str, value):
    cur = doc
    parts = dotted.split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = value


def expected_indexed(doc: dict, fmt: str, *, identity_keys: list[str], app_id: str | None = None) -> dict:
    """The document Elasticsearch should get for `doc` (as shipped) per docs/formats.md."""
    doc = copy.deepcopy(doc)
    if fmt == "ecs":
        out = doc
        out.pop("@version", None)
    else:
        table = formats_md_classic_table()
        out = {}
        for k, v in doc.items():
            rule = table.get(k)
            if rule == "dropped":
                continue
            if k in identity_keys:
                _set_dotted(out, f"labels.{k}", v if isinstance(v, str) else json.dumps(v, separators=(",", ":")))
                if k == "application":
                    _set_dotted(out, "service.name", v)
                continue
            if rule == "unchanged":
                out[k] = v
            elif rule is not None:
                if k == "levelname" and v == "WARNING":
                    v = "WARN"
                _set_dotted(out, rule, v)
            else:
                out.setdefault("fields", {})[k] = v
    if app_id is not None and not _get(out, ["service", "name"]):
        _set_dotted(out, "service.name", app_id)
    if isinstance(out.get("@timestamp"), str):
        out["@timestamp"] = reprinted_timestamp(out["@timestamp"])
    return out


def reprinted_timestamp(value: str) -> str:
    """A UTC ISO-8601 timestamp as Logstash prints it back (java.time ISO_INSTANT: the fraction
    in groups of 3 digits, none when zero), per formats.md."""
    m = re.fullmatch(r"(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(?:\.(\d{1,9}))?Z", value)
    if not m:
        raise ValueError(f"not a UTC timestamp the crate writes: {value!r}")
    frac = (m.group(2) or "").ljust(9, "0").rstrip("0")
    if frac:
        frac = "." + frac.ljust(3 * -(-len(frac) // 3), "0")
    return m.group(1) + frac + "Z"


def differences(actual: dict, expected: dict) -> list[str]:
    """Field-by-field differences between two documents (dotted leaf paths)."""
    a, e = flatten(actual), flatten(expected)
    out = []
    for path in sorted(set(a) | set(e)):
        if path not in a:
            out.append(f"{path}: missing (expected {e[path]!r})")
        elif path not in e:
            out.append(f"{path}: unexpected {a[path]!r}")
        elif a[path] != e[path] or type(a[path]) is not type(e[path]):
            out.append(f"{path}: {a[path]!r}, expected {e[path]!r}")
    return out
