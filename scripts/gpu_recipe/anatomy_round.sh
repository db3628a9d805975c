#!/bin/bash
# One device call, two runs side by side for MINUTES each, both from the shipped checkpoint (.devdata/init_shipped.pt)
# on the shipped model's GPU recipe (medium_gpu_round.sh's ship_gpu: 40 % absent-structure prompts, lr 3e-4 cosine,
# 8 patches a step) (issue 12, README "Tissue looks"):
#   bash scripts/gpu_recipe/anatomy_round.sh MINUTES     (after `make gpu-recipe-upload`; carry .devdata and .whl)
#   anat_gpu:  + 48 phantoms laid out like the real abdomen, with wide anatomy and wide HU and a patient's
#              surroundings (seeds 400-403 x 12, `--anatomy real --randomise wide --context rich`: README
#              "Phantoms with a patient's surroundings", where they beat the same phantoms without them on every set)
#              at the weight of the wide phantoms, and half the patches given another scan's tissue look
#              (--tissue-prob 0.5);
#   ctrl_gpu:  the same recipe without them, the control at equal GPU time.
# Score both on the CPU afterwards against the independent family (both seeds), the held-out phantoms and the real CT
# (README "Tissue looks": python -m textdiffseg.evaluate per set, scripts/compare_evals.py). Weights come back as
# $OUT/<name>.pt, logs in $OUT/logs.tgz. DEVICE=cpu STEPS=2 runs the same thing for two steps here (a dry run).
set -u
MINUTES=${1:-7}
. scripts/gpu_recipe/device_setup.sh
A=runs/gpu_anatomy
LIMIT=(--device "${DEVICE:-cuda}" --steps "${STEPS:-100000}" --workers 6)
COMMON=("${CURATED_RECIPE[@]}" --forget-untrained --negative-fraction 0.4 --lr 3e-4 --max-minutes "$MINUTES" "${LIMIT[@]}")
job ctrl_gpu --preset medium --seed 71 --init-from .devdata/init_shipped.pt &
# The control trains while the anatomy phantoms are drawn: four series of N_ANATOMY/4 (seeds 400-403) in parallel,
# each at a quarter of the weight (4 took 11 s on one core here: 48 in one process would hold one run ~2 min).
# Run 2026-11-28 with MINUTES=6 on one H200 (454 s in all): README "The same phantoms on a GPU".
N_ANATOMY=${N_ANATOMY:-48}
for k in 0 1 2 3; do
  $PY -m textdiffseg.data.phantom --spacing 2.5 2.5 2.5 --quiet --out $A/phantom_anatomy_$k --n $((N_ANATOMY / 4)) \
    --seed $((400 + k)) --anatomy real --randomise wide --context rich &
done
for pid in $(jobs -p | tail -n 4); do wait "$pid" || exit 1; done
echo "anatomy phantoms ready at $SECONDS s"
for k in 0 1 2 3; do COMMON+=(--data $A/phantom_anatomy_$k --data-weight 0.25); done
COMMON+=(--tissue-prob 0.5)
job anat_gpu --preset medium --seed 72 --init-from .devdata/init_shipped.pt &
sleep 60; nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader 2>/dev/null; uptime
wait
tar czf "$OUT/logs.tgz" $G/*.log $G/*/history.jsonl $G/*/summary.json 2>/dev/null
for name in ctrl_gpu anat_gpu; do grep -v "Warning\|Orientation\|non-tuple" $G/$name.log | tail -n 3; done
echo "done at $SECONDS s"
