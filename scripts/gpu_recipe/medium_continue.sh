#!/bin/bash
# Second GPU call of the medium model (README "The shipped model"), on the machine capacity.sh just ran on:
#   bash scripts/gpu_recipe/medium_continue.sh MINUTES     (carry .devdata and .whl; needs runs/gpu/cap_medium)
# cap_medium (7 min from scratch beside two other runs) continued alone, with every CPU core drawing patches and the
# learning rate restarted at half its first peak. Its weights come back as $OUT/cap_medium2.pt.
set -u
MINUTES=${1:-4.5}
. scripts/gpu_recipe/device_setup.sh
REAL=.devdata/realct
COMMON=(--foreground-fraction 0.5 --prompts-per-volume 8 --lr 1e-3 --lr-schedule cosine --windows multi --augment
        --exclusion-fraction 0.25 --scan-range-prob 0.3 --global-batch 8 --workers 13 --device cuda --steps 100000
        --max-minutes "$MINUTES" --save-every 500 --no-progress
        --data $G/phantom_wide --data $G/phantom_default --data $REAL/eval_ts_abdomen.json
        --data $REAL/cases_but_ts_abdomen.json --data-weight 1 --data-weight 0.5 --data-weight 3 --data-weight 1.5
        --structures-file scripts/gpu_recipe/structures.txt)
job cap_medium2 --preset medium --seed 32 --init-from $G/cap_medium/model.pt
tar czf "$OUT/logs2.tgz" $G/cap_medium2.log $G/cap_medium2/history.jsonl
echo "done at $SECONDS s"
