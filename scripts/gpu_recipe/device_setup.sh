# Sourced by the GPU recipe's scripts on the device: the wheels it lacks, the committed code on the path, and the
# two training phantom series of the real-CT recipe (wide seed 200 x 24, default seed 100 x 12, at 2.5 mm) in $G.
PY=${PY:-python3}
$PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/.devdata/code:$PWD OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
G=runs/gpu
mkdir -p $G
PH="$PY -m textdiffseg.data.phantom --spacing 2.5 2.5 2.5 --quiet"
$PH --out $G/phantom_wide --n 24 --seed 200 --randomise wide &
$PH --out $G/phantom_default --n 12 --seed 100 &
