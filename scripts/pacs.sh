#!/usr/bin/env bash
# A local PACS for OHIF and the DICOMweb datastore: Orthanc (Debian packages orthanc + orthanc-dicomweb) on loopback.
#
#   scripts/pacs.sh [up]   start Orthanc, load phantom CTs as DICOM series (STOW-RS), print the DICOMweb URL
#   scripts/pacs.sh start  start Orthanc only (waits until it answers)
#   scripts/pacs.sh load   write PACS_CASES phantoms, export them as DICOM and store them in the running Orthanc
#   scripts/pacs.sh stop   stop the Orthanc started from PACS_DIR (pid file)
#   scripts/pacs.sh status exit 0 when it runs
#
# Settings (environment): PACS_DIR (var/orthanc: config, storage, log, pid), PACS_HTTP_PORT (8042),
# PACS_CASES (3), PACS_SEED (0), PACS_SPACING ("2.5 2.5 2.5" mm; empty = the phantom's native 0.6-1 mm grid),
# ORTHANC (/usr/sbin/Orthanc), ORTHANC_PLUGINS (/usr/share/orthanc/plugins), PYTHON (.venv/bin/python).
# Orthanc accepts loopback HTTP only (RemoteAccessAllowed false) and its DICOM (DIMSE) port is off.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$(pwd)

PACS_DIR=${PACS_DIR:-$ROOT/var/orthanc}
PACS_HTTP_PORT=${PACS_HTTP_PORT:-8042}
PACS_CASES=${PACS_CASES:-3}
PACS_SEED=${PACS_SEED:-0}
PACS_SPACING=${PACS_SPACING-2.5 2.5 2.5}
ORTHANC=${ORTHANC:-/usr/sbin/Orthanc}
ORTHANC_PLUGINS=${ORTHANC_PLUGINS:-/usr/share/orthanc/plugins}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
PID_FILE=$PACS_DIR/orthanc.pid
URL=http://127.0.0.1:$PACS_HTTP_PORT
DICOMWEB_URL=$URL/dicom-web

die() { echo "pacs.sh: error: $*" >&2; exit 1; }

is_running() { [[ -f $PID_FILE ]] && kill -0 "$(cat "$PID_FILE")" 2>/dev/null; }

write_config() {
    mkdir -p "$PACS_DIR/db"
    cat >"$PACS_DIR/orthanc.json" <<EOF
{
  "Name": "TextDiffSeg PACS",
  "StorageDirectory": "$PACS_DIR/db",
  "IndexDirectory": "$PACS_DIR/db",
  "HttpServerEnabled": true,
  "HttpPort": $PACS_HTTP_PORT,
  "RemoteAccessAllowed": false,
  "AuthenticationEnabled": false,
  "DicomServerEnabled": false,
  "DicomAet": "TEXTDIFFSEG",
  "DicomPort": 4242,
  "StableAge": 5,
  "ConcurrentJobs": 1,
  "HttpThreadsCount": 8,
  "Plugins": ["$ORTHANC_PLUGINS/libOrthancDicomWeb.so"],
  "DicomWeb": {
    "Enable": true,
    "Root": "/dicom-web/",
    "EnableWado": true,
    "WadoRoot": "/wado",
    "Host": "127.0.0.1:$PACS_HTTP_PORT",
    "Ssl": false,
    "StudiesMetadata": "Full",
    "SeriesMetadata": "Full"
  }
}
EOF
}

start() {
    [[ -x $ORTHANC ]] || die "$ORTHANC not found: apt-get install -y orthanc orthanc-dicomweb"
    [[ -f $ORTHANC_PLUGINS/libOrthancDicomWeb.so ]] || die "DICOMweb plugin missing: apt-get install -y orthanc-dicomweb"
    if is_running; then
        echo "Orthanc already running (pid $(cat "$PID_FILE")) at $URL" >&2
        return 0
    fi
    if curl -s -o /dev/null "$URL/system"; then
        die "port $PACS_HTTP_PORT is taken by another server; set PACS_HTTP_PORT"
    fi
    write_config
    "$ORTHANC" "$PACS_DIR/orthanc.json" >>"$PACS_DIR/orthanc.log" 2>&1 &
    echo $! >"$PID_FILE"
    for _ in $(seq 1 60); do
        if curl -sf -o /dev/null "$DICOMWEB_URL/studies"; then
            echo "Orthanc $("$ORTHANC" --version | head -1 | awk '{print $2}') running (pid $(cat "$PID_FILE")) at $URL" >&2
            return 0
        fi
        is_running || die "Orthanc exited; see $PACS_DIR/orthanc.log"
        sleep 0.5
    done
    die "Orthanc did not answer on $URL within 30 s; see $PACS_DIR/orthanc.log"
}

load() {
    is_running || die "Orthanc is not running: scripts/pacs.sh start"
    local data=$PACS_DIR/phantom dcm=$PACS_DIR/dicom spacing=()
    [[ -n $PACS_SPACING ]] && spacing=(--spacing $PACS_SPACING)
    "$PYTHON" -m textdiffseg.data.phantom --out "$data" --n "$PACS_CASES" --seed "$PACS_SEED" "${spacing[@]}" --quiet
    "$PYTHON" -m textdiffseg.data.dicom_export --nifti-dir "$data" --out "$dcm" --limit "$PACS_CASES" --stow "$DICOMWEB_URL"
}

stop() {
    if ! is_running; then
        echo "Orthanc is not running (no live pid in $PID_FILE)" >&2
        rm -f "$PID_FILE"
        return 0
    fi
    local pid
    pid=$(cat "$PID_FILE")
    kill "$pid"
    for _ in $(seq 1 40); do
        kill -0 "$pid" 2>/dev/null || { rm -f "$PID_FILE"; echo "Orthanc stopped" >&2; return 0; }
        sleep 0.25
    done
    kill -9 "$pid" 2>/dev/null || true
    rm -f "$PID_FILE"
}

case "${1:-up}" in
    up)
        start
        load
        echo "DICOMweb: $DICOMWEB_URL"
        echo "Orthanc explorer: $URL/app/explorer.html"
        echo "Serve it: .venv/bin/python -m monailabel.main start_server --app apps/textdiffseg_app --studies $DICOMWEB_URL"
        echo "$DICOMWEB_URL"
        ;;
    start) start; echo "$DICOMWEB_URL" ;;
    load) load ;;
    stop) stop ;;
    status) is_running && echo "running (pid $(cat "$PID_FILE")) at $DICOMWEB_URL" || { echo "not running"; exit 1; } ;;
    *) die "unknown command '$1' (up, start, load, stop, status)" ;;
esac
