#!/bin/bash
# Is the small model too narrow for 23 structures? One device call, three runs side by side for MINUTES each:
#   bash scripts/gpu_recipe/capacity.sh MINUTES     (after `make gpu-recipe-upload`; carry .devdata and .whl)
# The shipped `small` model answers 0 for the pancreas, gallbladder and urinary bladder of the abdomen it was trained
# on, though its label autoencoder rebuilds them (Dice 0.79 / 0.94 / 0.96; runs/diag/pancreas_diag.py) and its
# denoiser turns even a nearly clean latent of them (t = 50) into an empty mask; in its text projection those three
# sit with the tumours (cosine 0.78-0.89), which are mostly absent, hence trained empty. All three runs start from
# scratch on the data of curated_fit.sh's cur_full (the 23 structures of structures.txt, every case, partial-label
# prompts and scan-range augmentation): cap_small (the control), cap_medium and cap_wide (config.py presets).
set -u
MINUTES=${1:-8}
. scripts/gpu_recipe/device_setup.sh
COMMON=("${CURATED_RECIPE[@]}" --lr 2e-3 --workers 5 --max-minutes "$MINUTES")
job cap_small --preset small --seed 31 &
job cap_medium --preset medium --seed 31 &
job cap_wide --preset wide --seed 31 &
sleep 90; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null; uptime
wait
tar czf "$OUT/logs.tgz" $G/*.log $G/*/history.jsonl $G/*/summary.json 2>/dev/null
for name in cap_small cap_medium cap_wide; do grep -v "Warning\|Orientation\|non-tuple" $G/$name.log | tail -n 2; done
echo "done at $SECONDS s"
