#!/bin/sh
# Entry point of the stack's Mosquitto: write the password file from the compose environment, then run the
# image's own entry point. Users: the gateway (username = site id), telegraf (ingest), dashboard (read only).
set -eu

PASSWD=${MOSQUITTO_PASSWD_FILE:-/mosquitto/data/passwd}
: "${PLUME_SITE_ID:?}" "${PLUME_MQTT_PASSWORD:?}" "${TELEGRAF_MQTT_PASSWORD:?}" "${DASHBOARD_MQTT_PASSWORD:?}"

mkdir -p "$(dirname "$PASSWD")"
umask 077
: > "$PASSWD"
add_user() {
  # The password goes through stdin, never the command line.
  printf '%s\n%s\n' "$2" "$2" | mosquitto_passwd "$PASSWD" "$1" >/dev/null
}
add_user "$PLUME_SITE_ID" "$PLUME_MQTT_PASSWORD"
add_user telegraf "$TELEGRAF_MQTT_PASSWORD"
add_user dashboard "$DASHBOARD_MQTT_PASSWORD"
# Mosquitto reads it after dropping to its own user.
if id mosquitto >/dev/null 2>&1; then chown mosquitto:mosquitto "$PASSWD"; fi
chmod 0600 "$PASSWD"

if [ -x /docker-entrypoint.sh ]; then
  exec /docker-entrypoint.sh "$@"
fi
exec "$@"
