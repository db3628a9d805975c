"""Read labelled CT folders: MSD task folders (and the phantom, which uses the same layout) and KiTS case folders.

Each loader returns :class:`LabelledCase` records: an image path, a label path and the *targets*, i.e. which label
values form each prompt-able structure. Nothing is loaded into memory here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from textdiffseg.data.label_maps import (
    KITS19_TARGETS,
    KITS21_TARGETS,
    MSD_NAME_ALIASES,
    MSD_TARGETS,
    phantom_targets,
)


@dataclass(frozen=True)
class LabelledCase:
    """One image with its integer label map and the structures (name -> label values) the map contains."""

    case_id: str
    image: Path
    label: Path
    targets: Mapping[str, tuple[int, ...]]


class DatasetFolderError(ValueError):
    """A folder does not hold a dataset this module can read; the message says what is missing."""


def _targets_from_msd_labels(labels: Mapping[str, str]) -> dict[str, tuple[int, ...]]:
    """Derive targets from an unknown MSD task's ``labels``.

    Organ names map to themselves, 'tumour' to '<organ> tumor'.
    """
    names = {int(k): str(v).strip().lower() for k, v in labels.items() if int(k) != 0}
    organ = next((MSD_NAME_ALIASES[n] for n in names.values() if MSD_NAME_ALIASES.get(n) not in (None, "tumor")), None)
    targets: dict[str, tuple[int, ...]] = {}
    for value, raw in names.items():
        alias = MSD_NAME_ALIASES.get(raw, raw)
        if alias == "tumor":
            targets[f"{organ} tumor" if organ else "tumor"] = (value,)
        else:
            targets[alias] = (value,)
    if organ and organ in targets:  # the organ prompt covers the whole organ, lesions included
        targets[organ] = tuple(sorted(names))
    return targets


def _entry_targets(
    entry: Mapping[str, object], default: Mapping[str, tuple[int, ...]], meta_path: Path
) -> dict[str, tuple[int, ...]]:
    """A case's own ``targets`` (``{structure: [values]}``, as ``datasets/realct`` writes them: each case lists only
    the structures it annotates), else the folder's."""
    own = entry.get("targets")
    if own is None:
        return dict(default)
    try:
        return {str(name): tuple(int(v) for v in values) for name, values in own.items()}  # type: ignore[union-attr]
    except (AttributeError, TypeError, ValueError) as err:
        raise DatasetFolderError(f"{meta_path}: targets of {entry.get('image')} are not {{name: [values]}}") from err


def load_msd_folder(folder: str | Path) -> list[LabelledCase]:
    """Cases of an MSD-layout folder (``dataset.json``, ``imagesTr/``, ``labelsTr/``), phantom folders included.

    A ``training`` entry may carry its own ``targets`` (``datasets/realct`` does: its cases annotate different
    structures, and a structure a case does not annotate must not become a negative prompt there).
    """
    folder = Path(folder)
    meta_path = folder / "dataset.json"
    if not meta_path.is_file():
        raise DatasetFolderError(f"{folder} has no dataset.json (expected an MSD task folder)")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except ValueError as err:
        raise DatasetFolderError(f"{meta_path} is not valid JSON: {err}") from err
    task = folder.name
    if meta.get("name") == "TextDiffSegPhantom":
        targets: Mapping[str, tuple[int, ...]] = phantom_targets(meta.get("labels", {}))
    elif task in MSD_TARGETS:
        targets = MSD_TARGETS[task]
    else:
        targets = _targets_from_msd_labels(meta.get("labels", {}))
    cases = []
    for entry in meta.get("training", []):
        image = (folder / entry["image"]).resolve()
        label = (folder / entry["label"]).resolve()
        if image.name.startswith("._"):
            continue  # macOS resource forks that ship inside the MSD tarballs
        if not image.is_file() or not label.is_file():
            raise DatasetFolderError(f"dataset.json lists {entry['image']} / {entry['label']} but a file is missing")
        cases.append(LabelledCase(image.name.split(".nii")[0], image, label, _entry_targets(entry, targets, meta_path)))
    if not cases:
        raise DatasetFolderError(f"{meta_path} lists no training cases")
    return cases


def load_kits_folder(folder: str | Path, version: int | None = None) -> list[LabelledCase]:
    """Cases of a KiTS folder (``case_XXXXX/imaging.nii.gz`` + ``segmentation.nii.gz`` or ``aggregated_MAJ_seg``).

    ``version`` 19 maps 1 kidney / 2 tumour; 21 and 23 add 3 cyst. By default a folder with
    ``aggregated_MAJ_seg.nii.gz`` files is KiTS21, otherwise KiTS19.
    """
    folder = Path(folder)
    cases = []
    for case_dir in sorted(p for p in folder.glob("case_*") if p.is_dir()):
        image = case_dir / "imaging.nii.gz"
        label = next(
            (case_dir / n for n in ("aggregated_MAJ_seg.nii.gz", "segmentation.nii.gz") if (case_dir / n).is_file()),
            None,
        )
        if not image.is_file() or label is None:
            continue  # KiTS test cases ship without segmentations
        ver = version or (21 if label.name.startswith("aggregated") else 19)
        targets = KITS19_TARGETS if ver == 19 else KITS21_TARGETS
        cases.append(LabelledCase(case_dir.name, image, label, dict(targets)))
    if not cases:
        raise DatasetFolderError(f"{folder} has no case_*/imaging.nii.gz with a segmentation (expected a KiTS folder)")
    return cases


def load_folder(folder: str | Path) -> list[LabelledCase]:
    """Read any supported layout: MSD/phantom (``dataset.json``) or KiTS (``case_*`` folders)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetFolderError(f"{folder} is not a folder")
    if (folder / "dataset.json").is_file():
        return load_msd_folder(folder)
    return load_kits_folder(folder)


def case_at(spec: str, structure: str | None = None) -> LabelledCase:
    """The case ``FOLDER:INDEX`` names (index from 0), checked to annotate ``structure`` when one is given; a bad
    index or a structure the case lacks is a :class:`DatasetFolderError` that says what there is."""
    folder, _, index = spec.rpartition(":")
    cases = load_folder(folder or spec)
    if not folder or not index.isdigit() or int(index) >= len(cases):
        raise DatasetFolderError(f"{spec}: say FOLDER:INDEX; {folder or spec} has cases 0..{len(cases) - 1}")
    case = cases[int(index)]
    if structure is not None and structure not in case.targets:
        raise DatasetFolderError(
            f"{case.case_id} does not annotate {structure!r}; it has {', '.join(sorted(case.targets))}"
        )
    return case


def save_case_list(cases: list[LabelledCase], path: str | Path) -> Path:
    """Write cases as JSON (``[{"case_id", "image", "label", "targets"}]``), e.g. to hand them to ``torchrun``."""
    rows = [
        {
            "case_id": c.case_id,
            "image": str(c.image),
            "label": str(c.label),
            "targets": {name: list(values) for name, values in c.targets.items()},
        }
        for c in cases
    ]
    path = Path(path)
    path.write_text(json.dumps(rows, indent=1))
    return path


def load_case_list(path: str | Path) -> list[LabelledCase]:
    """Read a case list written by :func:`save_case_list`; a malformed file is a :class:`DatasetFolderError`."""
    try:
        rows = json.loads(Path(path).read_text(encoding="utf-8"))
        cases = [
            LabelledCase(
                str(r["case_id"]),
                Path(r["image"]),
                Path(r["label"]),
                {str(k): tuple(int(v) for v in vs) for k, vs in r["targets"].items()},
            )
            for r in rows
        ]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise DatasetFolderError(f"cannot read case list {path}: {err}") from err
    missing = [str(c.image) for c in cases if not c.image.is_file() or not c.label.is_file()]
    if not cases or missing:
        raise DatasetFolderError(f"case list {path} is empty or names missing files: {missing[:3]}")
    return cases
