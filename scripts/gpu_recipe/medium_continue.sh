#!/bin/bash
# Second GPU call of the medium model (README "The shipped model"), on the machine capacity.sh just ran on:
#   bash scripts/gpu_recipe/medium_continue.sh MINUTES     (carry .devdata and .whl; needs runs/gpu/cap_medium)
# cap_medium (7 min from scratch beside two other runs) continued alone, with every CPU core drawing patches and the
# learning rate restarted at half its first peak. Its weights come back as $OUT/cap_medium2.pt.
set -u
MINUTES=${1:-4.5}
. scripts/gpu_recipe/device_setup.sh
COMMON=("${CURATED_RECIPE[@]}" --lr 1e-3 --workers 13 --max-minutes "$MINUTES")
job cap_medium2 --preset medium --seed 32 --init-from $G/cap_medium/model.pt
tar czf "$OUT/logs2.tgz" $G/cap_medium2.log $G/cap_medium2/history.jsonl
echo "done at $SECONDS s"
