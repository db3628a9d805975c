# Sourced by the GPU recipe's scripts on the device (after they set MINUTES): the wheels it lacks, the committed code
# on the path, the two training phantom series of the real-CT recipe (wide seed 200 x 24, default seed 100 x 12, at
# 2.5 mm) in $G, $OUT for what comes back, CURATED_MIX, and `job`, one training run of MINUTES.
OUT=${OUT:-runs/gpu_out}
mkdir -p "$OUT"
PY=${PY:-python3}
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/.devdata/code:$PWD OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
G=runs/gpu
mkdir -p $G
PH="$PY -m textdiffseg.data.phantom --spacing 2.5 2.5 2.5 --quiet"
$PH --out $G/phantom_wide --n 24 --seed 200 --randomise wide &
$PH --out $G/phantom_default --n 12 --seed 100 &
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
wait
echo "phantoms ready at $SECONDS s"

# The data of the curated recipe (capacity.sh, medium_continue.sh): wide phantoms 1 : demo phantoms 0.5 : the real
# abdomen 3 : the chest CTs 1.5, only the structures of structures.txt.
REAL=.devdata/realct
CURATED_MIX=(--data $G/phantom_wide --data $G/phantom_default --data $REAL/eval_ts_abdomen.json
             --data $REAL/cases_but_ts_abdomen.json --data-weight 1 --data-weight 0.5 --data-weight 3 --data-weight 1.5
             --structures-file scripts/gpu_recipe/structures.txt)
# The medium model's GPU recipe on that data (capacity.sh, medium_continue.sh add --lr, --workers and --max-minutes).
CURATED_RECIPE=(--foreground-fraction 0.5 --prompts-per-volume 8 --lr-schedule cosine --windows multi --augment
                --exclusion-fraction 0.25 --scan-range-prob 0.3 --global-batch 8 --device cuda --steps 100000
                --save-every 500 --no-progress "${CURATED_MIX[@]}")

job() {  # NAME FLAGS...: train_job.py with "${COMMON[@]}" and FLAGS into $G/NAME; its weights to $OUT/NAME.pt
  local name=$1; shift
  timeout $(( ${MINUTES%.*} * 60 + 100)) $PY scripts/gpu_recipe/train_job.py .devdata/prompts.pt "" -- \
    "${COMMON[@]}" "$@" --out $G/$name > $G/$name.log 2>&1
  cp $G/$name/model.pt "$OUT/$name.pt" && echo "$name trained at $SECONDS s"
}
