"""A structure the model never learned, from ONE real CT label, over REST: what a site's first ``/train`` achieves.

Run: ``python benchmarks/new_structure.py --ckpt CKPT --structure ribs --synonym "rib cage" --train-case
slicer_chest --test-case ts_abdomen``. It

1. starts ``monailabel start_server`` on a copy of the app serving a copy of ``CKPT``, with the two patients' CTs
   (``--data``, default ``datasets/realct``) as unlabelled images;
2. saves ONE label through ``PUT /datastore/label``: the train case's voxels of ``--structure`` only (value 1), with
   ``label_info`` naming it by free text (``--label-name``, default the structure's name);
3. runs ``POST /train/textdiffseg`` with the default settings (``--request`` adds keys) and measures its wall time
   (until ``/train/`` says it finished);
4. infers the structure on the OTHER patient's CT by its name and by a synonym (``--synonym``), before and after,
   and scores the masks (Dice against the test case's label);
5. scores the structures the served model already knew, before and after, on fixed-seed phantoms (in process, the
   same scorer as the publish gate), and the run's own model (``train_01/model.pt``) on both, published or not;
   and the served and the run's model on the known structures the test case's label holds.

Writes JSON, the server log and the run's own model (``.model.pt``) under ``runs/new_structure/`` and prints a
summary. The server trains with 2 threads (the 2-core box).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import nibabel as nib
import numpy as np
import requests
from monai.transforms import EnsureChannelFirst, LoadImage
from monailabel.client import MONAILabelClient

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from server_harness import ADMIN_CONF, copy_app, start_server  # noqa: E402
from textdiffseg.checkpoint import load_for_inference, read_config  # noqa: E402
from textdiffseg.data.folders import LabelledCase, load_folder  # noqa: E402
from textdiffseg.finetune import known_cases, phantom_set  # noqa: E402
from textdiffseg.inference import Segmenter  # noqa: E402
from textdiffseg.model_scores import dice, structure_dice  # noqa: E402
from textdiffseg.prompt_match import trained_structures  # noqa: E402

MODEL = "textdiffseg"
CHECK_SEED, CHECK_CASES = 77, 2  # phantoms for the before/after check (neither rehearsal nor regression set)
TRAIN_TIMEOUT_S = 40 * 60


def truth_mask(label_path: Path, values: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The structure's voxels in a label file, and the file's affine."""
    image = nib.load(label_path)
    return np.isin(np.asarray(image.dataobj).round().astype(np.int32), values), image.affine


def infer_dice(client: MONAILabelClient, case: str, prompt: str, truth: np.ndarray) -> dict:
    """``/infer`` one prompt on a stored image; Dice of its mask and how the server understood the prompt."""
    start = time.perf_counter()
    result, params = client.infer(MODEL, case, {"text_prompt": prompt})
    mask = np.asarray(nib.load(result).dataobj) > 0
    prompt_info = (params.get("prompts") or [{}])[0] if isinstance(params.get("prompts"), list) else {}
    return {
        "prompt": prompt,
        "dice": round(dice(mask, truth), 4),
        "predicted_voxels": int(mask.sum()),
        "truth_voxels": int(truth.sum()),
        "seconds": round(time.perf_counter() - start, 1),
        "understood_as": prompt_info.get("understood_as"),
        "known": prompt_info.get("known"),
    }


def known_structure_dice(ckpt: Path, folder: Path) -> dict[str, float]:
    """Dice per structure the checkpoint records as trained, on the check phantoms."""
    known = trained_structures(read_config(ckpt))
    model, encoder = load_for_inference(ckpt)
    scores = structure_dice(model, encoder, known_cases(folder, known, id_suffix=""))
    return {name: round(value, 4) for name, value in scores.items()}


def known_on_case(ckpt: Path, case: LabelledCase, known: tuple[str, ...]) -> dict[str, float]:
    """Dice per structure in ``known`` (those the served model knew) on a real case's labels."""
    model, encoder = load_for_inference(ckpt)
    targets = {name: values for name, values in case.targets.items() if name in known}
    scores = structure_dice(model, encoder, [LabelledCase(case.case_id, case.image, case.label, targets)])
    return {name: round(value, 4) for name, value in scores.items()}


def candidate_dice(ckpt: Path, image: Path, truth: np.ndarray, prompts: list[str]) -> list[dict]:
    """The run's own model (published or not) on the test image, in process, as ``/infer`` would segment it."""
    model, encoder = load_for_inference(ckpt)
    prediction = Segmenter(model, encoder).predict(
        EnsureChannelFirst()(LoadImage(image_only=True)(str(image))), prompts
    )
    masks = [prediction.probability[i] > 0.5 for i in range(len(prompts))]
    return [
        {"prompt": p, "dice": round(dice(m, truth), 4), "predicted_voxels": int(m.sum())}
        for p, m in zip(prompts, masks)
    ]


def wait_for_training(url: str, timeout_s: float) -> dict:
    """Poll ``/train/`` until the task has finished; returns its last status answer."""
    deadline = time.monotonic() + timeout_s
    status: dict = {}
    while time.monotonic() < deadline:
        status = requests.get(f"{url}/train/", timeout=30).json()
        if status.get("status") not in ("SUBMITTED", "RUNNING"):
            return status
        time.sleep(5.0)
    raise TimeoutError(f"training still running after {timeout_s} s")


def run(a: argparse.Namespace) -> dict:
    """The whole benchmark; returns the result record."""
    cases = {c.case_id: c for c in load_folder(a.data)}
    train_case, test_case = cases[a.train_case], cases[a.test_case]
    values_train = train_case.targets[a.structure]
    values_test = test_case.targets[a.structure]
    synonym = a.synonym
    work = Path(tempfile.mkdtemp(prefix="new_structure_"))
    studies = work / "studies"
    studies.mkdir()
    for case in (train_case, test_case):
        shutil.copyfile(case.image, studies / f"{case.case_id}.nii.gz")
    app = copy_app(work / "app", a.ckpt)
    check = phantom_set(work / "check_phantoms", CHECK_SEED, CHECK_CASES)
    record: dict = {
        "checkpoint": str(a.ckpt),
        "structure": a.structure,
        "label_name": a.label_name or a.structure,
        "synonym": synonym,
        "train_case": a.train_case,
        "test_case": a.test_case,
        "known_before": known_structure_dice(a.ckpt, check),
    }
    known = trained_structures(read_config(a.ckpt))
    record["known_on_test_before"] = known_on_case(a.ckpt, test_case, known)
    env = {"OMP_NUM_THREADS": str(a.threads), "MKL_NUM_THREADS": str(a.threads)}
    conf = {**ADMIN_CONF, "rehearsal_data": str(a.rehearsal_data) if a.rehearsal_data else "none"}
    server = start_server(app, studies, work, conf=conf, env=env)
    try:
        client = MONAILabelClient(server.url, tmpdir=str(work))
        truth_test, _ = truth_mask(test_case.label, values_test)
        record["before"] = [infer_dice(client, a.test_case, p, truth_test) for p in (a.structure, synonym)]
        truth_train, affine = truth_mask(train_case.label, values_train)
        label_path = work / f"{a.train_case}_{a.structure.replace(' ', '_')}.nii.gz"
        nib.save(nib.Nifti1Image(truth_train.astype(np.uint8), affine), label_path)
        label_info = [{"name": a.label_name or a.structure, "idx": 1}]
        client.save_label(a.train_case, str(label_path), tag="final", params={"label_info": label_info})
        request = dict(a.request)
        if a.max_minutes is not None:
            request["max_minutes"] = a.max_minutes
        start = time.perf_counter()
        client.train_start(MODEL, request)
        status = wait_for_training(server.url, TRAIN_TIMEOUT_S)
        record["train_wall_s"] = round(time.perf_counter() - start, 1)
        record["train_status"] = status.get("status")
        record["train_stats"] = client.info()["train_stats"][MODEL]
        record["after"] = [infer_dice(client, a.test_case, p, truth_test) for p in (a.structure, synonym)]
    finally:
        server.stop()
    run_model = app / "model" / "textdiffseg" / "train_01" / "model.pt"
    if run_model.is_file():  # what the run learned, whether the gate published it or not
        shutil.copyfile(run_model, a.out.with_suffix(".model.pt"))
        record["candidate"] = candidate_dice(run_model, test_case.image, truth_test, [a.structure, synonym])
        record["candidate_known"] = known_structure_dice(run_model, check)
        record["candidate_known_on_test"] = known_on_case(run_model, test_case, known)
    published = app / "model" / "textdiffseg.pt"
    record["published"] = published.is_file()
    record["known_after"] = known_structure_dice(published, check) if published.is_file() else record["known_before"]
    drops = {k: round(v - record["known_after"].get(k, 0.0), 4) for k, v in record["known_before"].items()}
    record["known_drop"] = drops
    record["max_known_drop"] = max(drops.values()) if drops else None
    a.out.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(server.log, a.out.with_suffix(".server.log"))
    shutil.rmtree(work, ignore_errors=True)
    return record


def summary(record: dict) -> str:
    """Printed lines."""
    lines = [
        f"checkpoint {record['checkpoint']}: learn '{record['structure']}' from one label of {record['train_case']}",
        f"/train wall time {record['train_wall_s']:.0f} s ({record['train_status']}), published: {record['published']}",
    ]
    for when in ("before", "after"):
        for r in record[when]:
            lines.append(f"  {when:6s} {record['test_case']} '{r['prompt']}': Dice {r['dice']:.3f} ({r['seconds']} s)")
    for r in record.get("candidate", []):
        lines.append(f"  run's model (published or not) '{r['prompt']}': Dice {r['dice']:.3f}")
    lines.append(f"  known structures (phantoms) before: {record['known_before']}")
    lines.append(f"  known structures (phantoms) after:  {record['known_after']}")
    lines.append(f"  largest drop on a known structure: {record['max_known_drop']}")
    if "candidate_known" in record:
        lines.append(f"  run's model, known structures (phantoms): {record['candidate_known']}")
        before, after = record["known_on_test_before"], record["candidate_known_on_test"]
        lines.append(f"  known structures on {record['test_case']}, served -> run's model:")
        lines += [f"    {name}: {before[name]:.3f} -> {after.get(name, 0.0):.3f}" for name in before]
    return "\n".join(lines)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ckpt", type=Path, required=True, help="checkpoint to serve and fine-tune")
    p.add_argument("--structure", default="aorta", help="vocabulary structure to learn (a target of both cases)")
    p.add_argument("--label-name", help="free-text name saved in label_info (default: --structure)")
    p.add_argument("--synonym", default="aortic vessel", help="another phrasing to infer it by")
    p.add_argument("--train-case", default="ts_chest_cta")
    p.add_argument("--test-case", default="ts_abdomen")
    p.add_argument("--data", type=Path, default=ROOT / "datasets" / "realct")
    p.add_argument("--max-minutes", type=float, help="override /train's max_minutes (default: the server's)")
    p.add_argument(
        "--rehearsal-data", type=Path, default=ROOT / "datasets" / "realct", help="--conf rehearsal_data of the server"
    )
    p.add_argument("--no-rehearsal-data", dest="rehearsal_data", action="store_const", const=None)
    p.add_argument("--request", type=json.loads, default={}, help="more /train request keys, as JSON")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the server (default 2)")
    p.add_argument("--out", type=Path, help="JSON path (default runs/new_structure/<ckpt>_<structure>_<time>.json)")
    a = p.parse_args(argv)
    if a.out is None:
        stamp = datetime.now().strftime("%Y%m%d_%H%M%S")
        a.out = ROOT / "runs" / "new_structure" / f"{a.ckpt.stem}_{a.structure.replace(' ', '_')}_{stamp}.json"
    return a


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    a = parse_args(argv)
    a.out.parent.mkdir(parents=True, exist_ok=True)
    record = run(a)
    a.out.write_text(json.dumps(record, indent=2))
    print(summary(record))
    print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
