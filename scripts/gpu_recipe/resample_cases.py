"""Shrink a labelled folder for upload: every case resampled to one spacing (RAS), written as a case list.

``python scripts/gpu_recipe/resample_cases.py --data datasets/realct --out .devdata/realct --spacing 2.5``
writes ``OUT/<case>_image.nii.gz`` (int16 HU), ``OUT/<case>_label.nii.gz`` (uint8) and ``OUT/cases.json``
(``textdiffseg.data.folders.save_case_list``, paths relative to the repository root). ``--drop NAME`` also writes
``OUT/cases_without_<name>.json``, the same cases with that structure never prompted (a model that has not seen it);
``--alone CASE`` writes ``OUT/eval_<case>.json``, that case alone (to score on it, or to weight it as a source of its
own), and ``OUT/cases_but_<case>.json``, every other case.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import nibabel as nib
import numpy as np
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd, Spacingd

from textdiffseg.data.folders import load_folder, save_case_list


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--spacing", type=float, default=2.5)
    p.add_argument("--drop", action="append", default=[], help="also write a case list without this structure")
    p.add_argument(
        "--alone", action="append", default=[], help="also write case lists of this case alone and of the others"
    )
    a = p.parse_args()
    load = Compose(
        [
            LoadImaged(keys=("image", "label"), image_only=True),
            EnsureChannelFirstd(keys=("image", "label")),
            Orientationd(keys=("image", "label"), axcodes="RAS"),
            Spacingd(keys=("image", "label"), pixdim=(a.spacing,) * 3, mode=("bilinear", "nearest")),
        ]
    )
    a.out.mkdir(parents=True, exist_ok=True)
    cases = []
    for case in load_folder(a.data):
        data = load({"image": str(case.image), "label": str(case.label)})
        affine = np.asarray(data["image"].affine, dtype=np.float64)
        image = np.clip(np.round(data["image"].numpy()[0]), -1024, 3071).astype(np.int16)
        label = np.round(data["label"].numpy()[0]).astype(np.uint8)
        image_path, label_path = a.out / f"{case.case_id}_image.nii.gz", a.out / f"{case.case_id}_label.nii.gz"
        nib.save(nib.Nifti1Image(image, affine), image_path)
        nib.save(nib.Nifti1Image(label, affine), label_path)
        cases.append(replace(case, image=image_path, label=label_path))
        print(f"{case.case_id}: {image.shape}")
    save_case_list(cases, a.out / "cases.json")
    for name in a.drop:
        kept = [replace(c, targets={k: v for k, v in c.targets.items() if k != name}) for c in cases]
        save_case_list(kept, a.out / f"cases_without_{name.replace(' ', '_')}.json")
    for case_id in a.alone:
        alone = [c for c in cases if c.case_id == case_id]
        if not alone:
            raise SystemExit(f"error: no case {case_id!r} in {a.data}")
        save_case_list(alone, a.out / f"eval_{case_id}.json")
        save_case_list([c for c in cases if c.case_id != case_id], a.out / f"cases_but_{case_id}.json")


if __name__ == "__main__":
    main()
