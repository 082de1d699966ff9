#!/bin/bash
# Entry point of the rabbitmq service: renders definitions.json with the passwords and the queue
# type from the environment (compose/.env), then hands over to the image's own entry point.
# With LCSTACK_DEFINITIONS_OUT set it only renders, to that file (scripts/cluster does).
set -euo pipefail

src=${LCSTACK_DEFINITIONS_SRC:-/etc/rabbitmq/logcollect/definitions.json}
dst=${LCSTACK_DEFINITIONS_OUT:-/tmp/logcollect-definitions.json}
if [ -z "${LCSTACK_DEFINITIONS_SRC:-}" ] && [ -n "${LCSTACK_DEFINITIONS_OUT:-}" ]; then
  src="$(dirname "$0")/definitions.json"
fi

# The queue type, one setting for the definitions and the Logstash pipeline (which defaults to
# the same): quorum (replicated), classic or stream. Fixed once the queue is declared.
: "${LCSTACK_QUEUE_TYPE:=quorum}"
case "$LCSTACK_QUEUE_TYPE" in
  quorum | classic | stream) ;;
  *)
    echo "render-definitions: LCSTACK_QUEUE_TYPE must be quorum, classic or stream, not \`$LCSTACK_QUEUE_TYPE'" >&2
    exit 1
    ;;
esac

shopt -u patsub_replacement 2>/dev/null || true
content=$(<"$src")
for var in RABBITMQ_ADMIN_PASSWORD RABBITMQ_PUBLISHER_PASSWORD RABBITMQ_LOGSTASH_PASSWORD \
  LCSTACK_QUEUE_TYPE; do
  value="${!var:-}"
  if [ -z "$value" ]; then
    echo "render-definitions: $var is not set (see compose/.env)" >&2
    exit 1
  fi
  case "$value" in
    *'"'* | *'\'* )
      echo "render-definitions: $var must not contain a double quote or a backslash" >&2
      exit 1
      ;;
  esac
  placeholder="\${$var}"
  content="${content//"$placeholder"/"$value"}"
done
case "$content" in
  *'${'*)
    echo "render-definitions: unreplaced placeholder left in $src" >&2
    exit 1
    ;;
esac

umask 077
printf '%s\n' "$content" > "$dst"
if [ -n "${LCSTACK_DEFINITIONS_OUT:-}" ]; then
  exit 0
fi
if [ "$(id -u)" = 0 ]; then
  chown rabbitmq:rabbitmq "$dst"
fi

# The cluster's shared Erlang cookie, where the node and its CLI tools read it.
if [ -n "${LCSTACK_ERLANG_COOKIE:-}" ]; then
  cookie=/var/lib/rabbitmq/.erlang.cookie
  printf '%s' "$LCSTACK_ERLANG_COOKIE" > "$cookie"
  chmod 600 "$cookie"
  if [ "$(id -u)" = 0 ]; then
    chown rabbitmq:rabbitmq "$cookie"
  fi
fi

exec docker-entrypoint.sh "$@"
