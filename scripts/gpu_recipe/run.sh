#!/bin/bash
# The GPU recipe of the real-CT checkpoint (issue 12), run on the lent device in one call:
#   bash scripts/gpu_recipe/run.sh MINUTES      (after scripts/gpu_recipe/prepare.sh here; carry .devdata and .whl)
# Generates the phantoms, then trains five models side by side on one GPU for MINUTES each:
#   lopo_v1 / lopo_v2: without the real abdomen (ts_abdomen), to score them on it;
#   full_v1 / full_v2: the same two recipes on every case (the shipped candidates);
#   noaorta:           every case but "aorta" never prompted, from the phantom-only demo model (issue 14's test of
#                      learning a structure it has never seen).
# v1: phantom_wide 2 : phantom_default 1 : real 1.5, foreground 0.33, lr 1e-3; v2: 1 : 0.5 : 3, foreground 0.5, 2e-3.
# Each model's weights come back as $OUT/<name>.pt as soon as it is written; logs, histories and evaluations in
# $OUT/logs.tgz.
set -u
MINUTES=${1:-7}
OUT=${OUT:-runs/gpu_out}
mkdir -p "$OUT"
PY=${PY:-python3}
DEVICE=${DEVICE:-cuda}
if [ "$DEVICE" = cuda ]; then
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
fi
# .devdata/code: the committed textdiffseg (prepare.sh), so the run is a commit's code, not a half-edited tree.
export PYTHONPATH=/tmp/site:$PWD/.devdata/code:$PWD OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
$PY -c "import torch, monai, textdiffseg; print('torch', torch.__version__, 'monai', monai.__version__, textdiffseg.__file__)"
G=runs/gpu
mkdir -p $G
PH="$PY -m textdiffseg.data.phantom --spacing 2.5 2.5 2.5 --quiet"
$PH --out $G/phantom_wide --n 24 --seed 200 --randomise wide &
$PH --out $G/phantom_default --n 12 --seed 100 &
$PH --out $G/eval_phantom --n 4 --seed 0 &
$PH --out $G/eval_phantom_wide --n 4 --seed 300 --randomise wide &
wait
echo "phantoms ready at $SECONDS s"
REAL=.devdata/realct
EVAL="abdomen=$REAL/eval_ts_abdomen.json,phantom=$G/eval_phantom,phantom_wide=$G/eval_phantom_wide"
COMMON=(--windows multi --augment --preset small --lr-schedule cosine --global-batch 4 --workers 2 --device "$DEVICE"
        --steps 100000 --max-minutes "$MINUTES" --save-every 500 --seed 1 --no-progress)
V1=(--data-weight 2 --data-weight 1 --data-weight 1.5 --foreground-fraction 0.33 --lr 1e-3)
V2=(--data-weight 1 --data-weight 0.5 --data-weight 3 --foreground-fraction 0.5 --lr 2e-3)
job() {  # name cases init recipe...
  local name=$1 cases=$2 init=$3; shift 3
  timeout $(( ${MINUTES%.*} * 60 + 120)) $PY scripts/gpu_recipe/train_job.py .devdata/prompts.pt "$EVAL" -- \
    --data $G/phantom_wide --data $G/phantom_default --data "$cases" --init-from "$init" "${COMMON[@]}" "$@" \
    --out $G/$name > $G/$name.log 2>&1
}
job lopo_v1 $REAL/cases.json .devdata/init_gen.pt "${V1[@]}" --exclude-case ts_abdomen &
job full_v1 $REAL/cases.json .devdata/init_gen.pt "${V1[@]}" &
job lopo_v2 $REAL/cases.json .devdata/init_gen.pt "${V2[@]}" --exclude-case ts_abdomen &
job full_v2 $REAL/cases.json .devdata/init_gen.pt "${V2[@]}" &
job noaorta $REAL/cases_without_aorta.json .devdata/init_demo.pt "${V1[@]}" &
# Copy each model back as soon as training writes it (the evaluation that follows may be cut off by the limit).
for name in lopo_v1 full_v1 lopo_v2 full_v2 noaorta; do
  ( while [ ! -f $G/$name/summary.json ] && kill -0 $$ 2>/dev/null; do sleep 5; done
    cp $G/$name/model.pt "$OUT/$name.pt" 2>/dev/null; echo "$name trained at $SECONDS s" ) &
done
sleep $(( ${MINUTES%.*} * 60 + 40))
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null
wait
tar czf "$OUT/logs.tgz" $G/*.log $G/*/history.jsonl $G/*/summary.json $G/*/eval_* 2>/dev/null
for name in lopo_v1 full_v1 lopo_v2 full_v2 noaorta; do tail -n 3 $G/$name.log; cat $G/$name/eval_abdomen.md 2>/dev/null | grep -E "liver|spleen|kidney|pancreas|aorta|mean"; done
echo "done at $SECONDS s"
