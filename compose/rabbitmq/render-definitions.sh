#!/bin/bash
# Entry point of the rabbitmq service: renders definitions.json with the passwords from the
# environment (compose/.env), then hands over to the image's own entry point.
set -euo pipefail

src=/etc/rabbitmq/logcollect/definitions.json
dst=/tmp/logcollect-definitions.json

shopt -u patsub_replacement 2>/dev/null || true
content=$(<"$src")
for var in RABBITMQ_ADMIN_PASSWORD RABBITMQ_PUBLISHER_PASSWORD RABBITMQ_LOGSTASH_PASSWORD; do
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
if [ "$(id -u)" = 0 ]; then
  chown rabbitmq:rabbitmq "$dst"
fi

exec docker-entrypoint.sh "$@"
