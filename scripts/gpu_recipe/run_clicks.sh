#!/bin/bash
# Issue 15's click fine-tune on the lent GPU, one call: `bash scripts/gpu_recipe/run_clicks.sh MINUTES`
# (after `make gpu-recipe-upload`, which also copies the shipped model to .devdata/init_shipped.pt).
# The shipped model gets a click branch (zero-initialised: text-only output unchanged at the start) and is
# fine-tuned for MINUTES on the shipped model's data mix (recipe v2, ts_abdomen held out) with half the prompts
# carrying 1-5 clicks simulated from its own errors. The weights come back as $OUT/clicks.pt, the log as
# $OUT/clicks.log.
set -u
MINUTES=${1:-2.75}
. scripts/gpu_recipe/device_setup.sh
timeout $(( ${MINUTES%.*} * 60 + 90 )) python3 scripts/gpu_recipe/train_job.py .devdata/prompts.pt "" -- \
  --data $G/phantom_wide --data $G/phantom_default --data .devdata/realct/cases.json --exclude-case ts_abdomen \
  --data-weight 1 --data-weight 0.5 --data-weight 3 --foreground-fraction 0.5 --lr 5e-4 --lr-schedule cosine \
  --init-from .devdata/init_shipped.pt --click-fraction 0.5 --augment --global-batch 4 --workers 2 --device cuda \
  --steps 100000 --max-minutes "$MINUTES" --save-every 500 --seed 2 --no-progress --out $G/clicks > $G/clicks.log 2>&1
cp $G/clicks/model.pt "$OUT/clicks.pt"
grep -v "Warning\|Orientation\|non-tuple" $G/clicks.log | tail -n 5 > "$OUT/clicks.log"
cat "$OUT/clicks.log"
echo "done at $SECONDS s"
