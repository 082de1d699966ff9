#!/bin/bash
# One-shot job: imports the logcollect data view, saved search, Lens visualizations and dashboard
# into Kibana. Fails unless Kibana answers "success":true (HTTP 200 can still carry per-object
# errors).
set -euo pipefail

: "${ELASTIC_PASSWORD:?ELASTIC_PASSWORD is not set}"
KIBANA_URL="${KIBANA_URL:-http://kibana:5601}"
FILE="${KIBANA_OBJECTS:-/logcollect/kibana/logcollect.ndjson}"

until curl -fsS -o /dev/null -u "elastic:${ELASTIC_PASSWORD}" "${KIBANA_URL}/api/status"; do
  echo "Waiting for Kibana at ${KIBANA_URL}"
  sleep 3
done

response=$(curl -sS -u "elastic:${ELASTIC_PASSWORD}" -H 'kbn-xsrf: true' \
  -X POST "${KIBANA_URL}/api/saved_objects/_import?overwrite=true" \
  --form "file=@${FILE}")
echo "$response"

if printf '%s' "$response" | grep -Eq '"success"[[:space:]]*:[[:space:]]*true'; then
  echo "Kibana saved objects imported"
else
  echo "Kibana saved objects import FAILED" >&2
  exit 1
fi
