#!/bin/bash
# One device call, two runs side by side for MINUTES each, both from the medium checkpoint shipped at 5e15a48
# (`make medium-continue-2`; .devdata/init_medium3.pt) (issues 12, 13):
#   bash scripts/gpu_recipe/medium_gpu_round.sh MINUTES     (after `make gpu-recipe-upload`; carry .devdata and .whl)
#   ship_gpu:  the whole-CT model continued on the CPU recipe of `make medium-continue-2` (40 % absent-structure
#              prompts, lr 3e-4 cosine) with 8 patches a step instead of one; shipped (README "The shipped model");
#   fine_gpu:  a zoom-in fine stage for the medium model (README "Zoom-in for small targets"): the pancreas and the
#              tumours only, at 1.5 x 1.5 x 2.5 mm, phantoms (default seed 100, wide seed 200, 8 each) and every
#              real case, 80 % foreground patches, the coarse prior missed half the time; not shipped (it paints
#              tumours into every organ that has none).
# Weights come back as $OUT/<name>.pt, logs and histories in $OUT/logs.tgz; scoring happens on the CPU afterwards.
# DEVICE=cpu STEPS=2 runs the same thing for two steps here (a dry run).
set -u
MINUTES=${1:-7}
. scripts/gpu_recipe/device_setup.sh
F=runs/gpu_fine
FPH="$PY -m textdiffseg.data.phantom --spacing 1.5 1.5 2.5 --quiet"
$FPH --out $F/phantom_default --n 8 --seed 100 & $FPH --out $F/phantom_wide --n 8 --seed 200 --randomise wide &
wait
echo "fine phantoms ready at $SECONDS s"
LIMIT=(--device "${DEVICE:-cuda}" --steps "${STEPS:-100000}" --workers 6)
SMALL=(--structure pancreas --structure "liver tumor" --structure "kidney tumor" --structure "pancreas tumor"
       --structure "colon tumor" --structure "lung tumor")
COMMON=("${CURATED_RECIPE[@]}" --forget-untrained --negative-fraction 0.4 --lr 3e-4 --max-minutes "$MINUTES" "${LIMIT[@]}")
job ship_gpu --preset medium --seed 61 --init-from .devdata/init_medium3.pt &
COMMON=(--data $F/phantom_default --data $F/phantom_wide --data $REAL/cases.json --data-weight 1 --data-weight 1
        --data-weight 1 "${SMALL[@]}" --stage fine --foreground-fraction 0.8 --prior-miss-rate 0.5 --augment
        --windows multi --lr 1e-3 --lr-schedule cosine --global-batch 8 --save-every 500 --no-progress
        --max-minutes "$MINUTES" "${LIMIT[@]}")
job fine_gpu --seed 62 --init-from .devdata/init_medium3.pt &
sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null; uptime
wait
tar czf "$OUT/logs.tgz" $G/*.log $G/*/history.jsonl $G/*/summary.json 2>/dev/null
for name in ship_gpu fine_gpu; do grep -v "Warning\|Orientation\|non-tuple" $G/$name.log | tail -n 3; done
echo "done at $SECONDS s"
