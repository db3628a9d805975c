#!/bin/bash
# Here, before scripts/gpu_recipe/run.sh on the device: what its upload carries (.devdata and .whl, ~35 MB).
#   .devdata/prompts.pt   every vocabulary phrasing, encoded by the packaged text encoder (88 MB: not uploaded)
#   .devdata/realct/      the real cases at 2.5 mm (+ case lists: without "aorta", the abdomen alone, the others)
#   .devdata/init_*.pt    the starting checkpoints: runs/gen/run/model.pt (make gen-checkpoint) and the demo model
#   .devdata/code/        textdiffseg as committed (git archive HEAD), what the device imports
#   .whl/                 pure-Python wheels the device image lacks (MONAI, nibabel, pynrrd, pydicom)
set -eu
rm -rf .devdata/code && mkdir -p .devdata/code && git archive HEAD textdiffseg | tar -x -C .devdata/code
PY=${PY:-.venv/bin/python}
mkdir -p .devdata .whl
$PY -m textdiffseg.text.precomputed --out .devdata/prompts.pt
$PY scripts/gpu_recipe/resample_cases.py --data datasets/realct --out .devdata/realct --spacing 2.5 --drop aorta \
  --alone ts_abdomen
if [ -f runs/gen/run/model.pt ]; then cp runs/gen/run/model.pt .devdata/init_gen.pt; fi  # run.sh
git show 5dc123c~1:apps/textdiffseg_app/model/pretrained_textdiffseg.pt > .devdata/init_demo.pt  # phantom-only demo
cp apps/textdiffseg_app/model/pretrained_textdiffseg.pt .devdata/init_shipped.pt  # run_clicks.sh
git show 5e15a48:apps/textdiffseg_app/model/pretrained_textdiffseg.pt > .devdata/init_medium3.pt  # medium_gpu_round.sh
git show 3e346f6~1:apps/textdiffseg_app/model/pretrained_textdiffseg.pt > .devdata/init_lopo_v2.pt  # continue.sh, curated_fit.sh
if [ -f runs/device/full_v2.pt ]; then cp runs/device/full_v2.pt .devdata/init_full_v2.pt; fi  # continue.sh
$PY -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
  --platform manylinux2014_x86_64 -d .whl monai==1.5.2 nibabel==5.4.2 pynrrd==1.1.3 pydicom==2.4.4
du -sh .devdata .whl
