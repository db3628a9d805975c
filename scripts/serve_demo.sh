#!/usr/bin/env bash
# Start the MONAI Label server for the demo: the TextDiffSeg app on the phantom datastore, loopback only.
set -euo pipefail
APP=${1:-apps/textdiffseg_app}
DATA=${2:-datasets/phantom}
HOST=${3:-127.0.0.1}
PORT=${4:-8000}
PY=${PY:-.venv/bin/python}
mkdir -p "$APP/logs"
if [ ! -f "$APP/main.py" ]; then
  echo "phantom data is ready in $DATA; the MONAI Label app ($APP/main.py) is not there yet, so no server was started."
  exit 0
fi
cat <<MSG
TextDiffSeg demo server starting on http://$HOST:$PORT  (OHIF viewer: http://$HOST:$PORT/ohif/ once a DICOMweb store is used)
Try:  curl -s -X POST "http://$HOST:$PORT/infer/textdiffseg?image=phantom_000&output=json" -F 'params={"text_prompt":"liver"}'
3D Slicer: MONAILabel module -> server http://$HOST:$PORT -> model "textdiffseg" -> type a prompt in the text_prompt option.
MSG
exec "$PY" -m monailabel.main start_server --app "$APP" --studies "$DATA" --host "$HOST" --port "$PORT"
