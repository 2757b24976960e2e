#!/bin/sh
# ioc-setup: the one-shot `setup` job of docker/compose.yaml. Safe to run again; run it
# after adding, disabling or re-keying an agency, then send SIGHUP to the broker.
#
#   1. `ioc migrate`: schema and shipped catalogue, up to date;
#   2. the services' broker accounts, created with the passwords from the environment
#      if they do not exist yet (an existing account keeps its password: to change one,
#      `ioc user reset-password NAME` and put the printed password in docker/.env);
#   3. `ioc broker config`: passwd, acl and mosquitto.conf from the accounts in the
#      database, into the volume the broker reads.
set -eu

config_dir=${BROKER_CONFIG_DIR:-/mosquitto/config}
data_dir=${BROKER_DATA_DIR:-/mosquitto/data}
: "${SVC_INGEST_PASSWORD:?set SVC_INGEST_PASSWORD in docker/.env}"
: "${SVC_CAMERA_PASSWORD:?set SVC_CAMERA_PASSWORD in docker/.env}"
: "${SVC_API_PASSWORD:?set SVC_API_PASSWORD in docker/.env}"

ioc migrate

accounts=$(ioc user list | awk '{ print $1 }')

# ensure_account NAME ROLE PASSWORD
ensure_account() {
    if printf '%s\n' "$accounts" | grep -qxF "$1"; then
        echo "service account $1 exists"
    else
        printf '%s\n' "$3" | ioc user add "$1" --role "$2" --password-stdin
    fi
}

ensure_account svc-ingest ingest "$SVC_INGEST_PASSWORD"
ensure_account svc-camera camera "$SVC_CAMERA_PASSWORD"
ensure_account svc-api api "$SVC_API_PASSWORD"

ioc broker config --dir "$config_dir" --data-dir "$data_dir" --port 1883 --service-port 1884
