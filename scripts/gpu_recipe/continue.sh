#!/bin/bash
# Second GPU stage of the real-CT checkpoint (issues 12 and 15), one device call:
#   bash scripts/gpu_recipe/continue.sh MINUTES     (after `make gpu-recipe-upload`; carry .devdata and .whl)
# Continues the first stage's models (run.sh) for MINUTES each, side by side, with twice the patches per step:
#   lopo_v3:   the shipped model (lopo_v2), recipe v2, ts_abdomen still held out (the shipping candidate);
#   clicks_v3: the same with half the prompts carrying 1-5 clicks simulated from its own errors (issue 15);
#   full_v3:   full_v2 on every case, ts_abdomen included (does more training fit the real kidneys at all?).
# Weights come back as $OUT/<name>.pt, logs and histories in $OUT/logs.tgz; scoring happens on the CPU afterwards
# (python -m textdiffseg.evaluate), so the device time goes to training.
set -u
MINUTES=${1:-7}
. scripts/gpu_recipe/device_setup.sh
REAL=.devdata/realct
COMMON=(--data $G/phantom_wide --data $G/phantom_default --data $REAL/cases.json
        --data-weight 1 --data-weight 0.5 --data-weight 3 --foreground-fraction 0.5 --lr 1e-3 --lr-schedule cosine
        --windows multi --augment --preset small --global-batch 8 --workers 4 --device cuda
        --steps 100000 --max-minutes "$MINUTES" --save-every 500 --no-progress)
job lopo_v3 --init-from .devdata/init_lopo_v2.pt --exclude-case ts_abdomen --seed 3 &
job clicks_v3 --init-from .devdata/init_lopo_v2.pt --exclude-case ts_abdomen --click-fraction 0.5 --seed 4 &
job full_v3 --init-from .devdata/init_full_v2.pt --seed 5 &
sleep 90; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null; uptime
wait
tar czf "$OUT/logs.tgz" $G/*.log $G/*/history.jsonl $G/*/summary.json 2>/dev/null
for name in lopo_v3 clicks_v3 full_v3; do grep -v "Warning\|Orientation\|non-tuple" $G/$name.log | tail -n 2; done
echo "done at $SECONDS s"
