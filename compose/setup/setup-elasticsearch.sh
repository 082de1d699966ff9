#!/bin/bash
# One-shot setup job of the logcollect stack (runs in the Elasticsearch image, which has curl).
# Idempotent: every call is a PUT/POST that can be repeated.
#   - password of the built-in kibana_system user
#   - role logcollect_writer (write only to logs-logcollect-*) and the user Logstash writes as
#   - ILM policy logcollect (delete after LCSTACK_RETENTION_DAYS) attached to the
#     logs-logcollect-* data streams through an index template that composes the built-in logs
#     component templates
set -euo pipefail

: "${ELASTIC_PASSWORD:?ELASTIC_PASSWORD is not set}"
: "${KIBANA_SYSTEM_PASSWORD:?KIBANA_SYSTEM_PASSWORD is not set}"
: "${LOGSTASH_ES_PASSWORD:?LOGSTASH_ES_PASSWORD is not set}"
: "${LCSTACK_RETENTION_DAYS:?LCSTACK_RETENTION_DAYS is not set}"
ES_URL="${ES_URL:-http://elasticsearch:9200}"

case "$LCSTACK_RETENTION_DAYS" in
  '' | *[!0-9]*) echo "LCSTACK_RETENTION_DAYS must be a whole number of days" >&2; exit 1 ;;
esac

# es METHOD PATH [JSON BODY]: fails (and prints the answer) on any HTTP status >= 300.
es() {
  local method=$1 path=$2 body=${3:-}
  local out status
  out=$(mktemp)
  if [ -n "$body" ]; then
    status=$(curl -sS -o "$out" -w '%{http_code}' -u "elastic:${ELASTIC_PASSWORD}" \
      -X "$method" -H 'Content-Type: application/json' "${ES_URL}${path}" --data-binary "$body")
  else
    status=$(curl -sS -o "$out" -w '%{http_code}' -u "elastic:${ELASTIC_PASSWORD}" \
      -X "$method" "${ES_URL}${path}")
  fi
  echo "$method $path -> $status"
  if [ "$status" -ge 300 ]; then
    cat "$out" >&2
    echo >&2
    rm -f "$out"
    return 1
  fi
  rm -f "$out"
}

echo "Waiting for Elasticsearch at ${ES_URL}"
until curl -fsS -o /dev/null -u "elastic:${ELASTIC_PASSWORD}" "${ES_URL}/_cluster/health?wait_for_status=yellow&timeout=5s"; do
  sleep 2
done

es POST /_security/user/kibana_system/_password "{\"password\": \"${KIBANA_SYSTEM_PASSWORD}\"}"

# Logstash needs `monitor` (version and license checks at start-up) and, on the data streams,
# auto_configure (create logs-logcollect-<namespace> on first write) and create_doc (bulk
# `create` with our document_id; no overwrite, no delete).
es PUT /_security/role/logcollect_writer '{
  "cluster": ["monitor"],
  "indices": [
    {"names": ["logs-logcollect-*"], "privileges": ["create_doc", "auto_configure"]}
  ]
}'
es PUT /_security/user/logcollect_writer "{
  \"password\": \"${LOGSTASH_ES_PASSWORD}\",
  \"roles\": [\"logcollect_writer\"],
  \"full_name\": \"logcollect Logstash writer\"
}"

# Retention: roll over daily (or at 50 GB per primary shard), delete LCSTACK_RETENTION_DAYS
# days after rollover.
es PUT /_ilm/policy/logcollect "{
  \"policy\": {
    \"_meta\": {\"managed_by\": \"logcollect compose setup\"},
    \"phases\": {
      \"hot\": {\"actions\": {\"rollover\": {\"max_age\": \"1d\", \"max_primary_shard_size\": \"50gb\"}}},
      \"delete\": {\"min_age\": \"${LCSTACK_RETENTION_DAYS}d\", \"actions\": {\"delete\": {}}}
    }
  }
}"

# Our own index template for logs-logcollect-*: priority 200 beats the built-in `logs`
# template (100) and composes the same built-in component templates, so the ECS mappings stay;
# only the lifecycle policy changes, and the free-form `fields` object is `flattened` (user
# fields of different types under one name never cause mapping conflicts). A flattened leaf is
# one keyword term: over Lucene's 32,766-byte limit the whole document would be rejected, so
# longer leaves are not indexed (kept in _source); 8191 characters of up to 4 bytes fit.
es PUT /_index_template/logs-logcollect '{
  "index_patterns": ["logs-logcollect-*"],
  "priority": 200,
  "data_stream": {},
  "composed_of": ["logs@mappings", "logs@settings", "logs@custom", "ecs@mappings"],
  "ignore_missing_component_templates": ["logs@custom"],
  "template": {
    "settings": {"index.lifecycle.name": "logcollect"},
    "mappings": {"properties": {"fields": {"type": "flattened", "ignore_above": 8191}}}
  },
  "_meta": {"description": "logcollect events (RabbitMQ -> Logstash)", "managed_by": "logcollect compose setup"}
}'

echo "Elasticsearch setup done"
