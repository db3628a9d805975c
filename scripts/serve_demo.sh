#!/usr/bin/env bash
# Start the MONAI Label server for the demo: the TextDiffSeg app on the phantom datastore, loopback only.
set -euo pipefail
APP=${1:-apps/textdiffseg_app}
DATA=${2:-datasets/phantom}
HOST=${3:-127.0.0.1}
PORT=${4:-8000}
PY=${PY:-.venv/bin/python}
# Training, scoring and model replacement are admin operations (SECURITY.md); ANONYMOUS_ADMIN=true allows them
# without auth, for a single-user machine: `make demo ANONYMOUS_ADMIN=true`.
ANONYMOUS_ADMIN=${ANONYMOUS_ADMIN:-false}
mkdir -p "$APP/logs"
cat <<MSG

TextDiffSeg demo server: http://$HOST:$PORT   (API docs at /docs; ready when the log says "Application startup complete")
Try:    curl -s -X POST "http://$HOST:$PORT/infer/textdiffseg?image=phantom_000&output=json" --form-string 'params={"text_prompt": "liver; left kidney"}'
Slicer: MONAILabel module -> server http://$HOST:$PORT -> Next Sample -> model "textdiffseg", type the prompt in its text_prompt option -> Run.
        (OHIF at http://$HOST:$PORT/ohif/ needs a DICOMweb studies URL such as Orthanc instead of this folder.)
Train:  admin operation; anonymous_admin=$ANONYMOUS_ADMIN (single-user machine: make demo ANONYMOUS_ADMIN=true).

MSG
# Offline: never reach the Hugging Face hub; no SAM2 or pretrained downloads happen in this app.
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# The app hardens the server at start-up (textdiffseg_server); naming its ASGI module only does it at import.
exec "$PY" -m monailabel.main start_server --app "$APP" --studies "$DATA" --host "$HOST" --port "$PORT" \
  --uvicorn_app textdiffseg_server.asgi:app --conf anonymous_admin "$ANONYMOUS_ADMIN"
