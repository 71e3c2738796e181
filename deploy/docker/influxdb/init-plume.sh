#!/bin/bash
# Run once by the influxdb:2 image after its setup (DOCKER_INFLUXDB_INIT_MODE=setup), from
# /docker-entrypoint-initdb.d/: make the bucket reachable through the v1 API, so InfluxQL (Grafana's InfluxQL
# data source, `influx v1 shell`, InfluxDB 1.x tools) works next to Flux:
#   - a DBRP mapping: database "plume", retention policy "autogen" -> the bucket;
#   - a v1 user for InfluxQL clients (read and write on that bucket).
set -euo pipefail

org=$DOCKER_INFLUXDB_INIT_ORG
token=$DOCKER_INFLUXDB_INIT_ADMIN_TOKEN
bucket_id=$(influx bucket list --org "$org" --token "$token" --name "$DOCKER_INFLUXDB_INIT_BUCKET" --hide-headers \
  | cut -f1)
[[ -n $bucket_id ]] || { echo "init-plume: bucket $DOCKER_INFLUXDB_INIT_BUCKET not found" >&2; exit 1; }

influx v1 dbrp create --org "$org" --token "$token" --db "${PLUME_INFLUX_DB:-plume}" --rp autogen \
  --bucket-id "$bucket_id" --default
influx v1 auth create --org "$org" --token "$token" --username "${PLUME_INFLUX_V1_USER:-plume}" \
  --password "${PLUME_INFLUX_V1_PASSWORD:?}" --read-bucket "$bucket_id" --write-bucket "$bucket_id"
echo "init-plume: database ${PLUME_INFLUX_DB:-plume}/autogen -> bucket $DOCKER_INFLUXDB_INIT_BUCKET ($bucket_id)"
