#!/bin/bash
# Third GPU stage of the real-CT checkpoint (issue 12), one device call:
#   bash scripts/gpu_recipe/real_fit.sh MINUTES     (after `make gpu-recipe-upload`; carry .devdata and .whl)
# Why: the earlier stages prompted ~30 structures of the one real abdomen with 4 prompts per patch and that abdomen
# one case in six, so each of its organs was trained on ~200 prompts: too few to fit it even when it was in the
# training set (full_v3: kidneys 0). On 2 CPU cores, 300 steps with 300 prompts per organ fit it (liver 0.91,
# spleen 0.88, kidneys 0.86 / 0.89), augmentation on. This stage gives the real abdomen its own source and
# 12 prompts per patch (the data workers, not the GPU, bound the step rate, so more prompts per patch are cheap):
#   full_v4:  the shipped model on every case; wide phantoms 1 : demo phantoms 0.5 : real abdomen 3 : chest CTs 1.5;
#   lopo_v4:  the same recipe without the real abdomen (the recipe's held-out figure on it);
#   real_v4:  real-heavier (wide phantoms 0.5 : real abdomen 4 : chest CTs 2, no demo phantoms).
# Weights come back as $OUT/<name>.pt, logs and histories in $OUT/logs.tgz; scoring happens on the CPU afterwards.
set -u
MINUTES=${1:-7}
. scripts/gpu_recipe/device_setup.sh
REAL=.devdata/realct
COMMON=(--foreground-fraction 0.5 --prompts-per-volume 12 --lr 2e-3 --lr-schedule cosine --windows multi --augment
        --preset small --global-batch 8 --workers 4 --device cuda --steps 100000 --max-minutes "$MINUTES"
        --save-every 500 --init-from .devdata/init_shipped.pt --no-progress)
job full_v4 --data $G/phantom_wide --data $G/phantom_default --data $REAL/eval_ts_abdomen.json \
  --data $REAL/cases_but_ts_abdomen.json --data-weight 1 --data-weight 0.5 --data-weight 3 --data-weight 1.5 --seed 11 &
job lopo_v4 --data $G/phantom_wide --data $G/phantom_default --data $REAL/cases_but_ts_abdomen.json \
  --data-weight 1 --data-weight 0.5 --data-weight 1.5 --seed 12 &
job real_v4 --data $G/phantom_wide --data $REAL/eval_ts_abdomen.json --data $REAL/cases_but_ts_abdomen.json \
  --data-weight 0.5 --data-weight 4 --data-weight 2 --seed 13 &
sleep 120; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null; uptime
wait
tar czf "$OUT/logs.tgz" $G/*.log $G/*/history.jsonl $G/*/summary.json 2>/dev/null
for name in full_v4 lopo_v4 real_v4; do grep -v "Warning\|Orientation\|non-tuple" $G/$name.log | tail -n 2; done
echo "done at $SECONDS s"
