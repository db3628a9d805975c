"""Bad ``/infer`` inputs for the reliability tests: each is a request plus the status and message it must get.

Files are written on demand into a folder (small: int16 zeros compress to almost nothing).
"""

from __future__ import annotations

import gzip
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nibabel as nib
import numpy as np

MODEL = "textdiffseg"


@dataclass(frozen=True)
class BadInput:
    """One bad request: ``POST /infer/{model}?image=...`` with ``params`` (str or raw bytes) and optional upload."""

    name: str
    status: int
    detail: str  # a fragment the JSON ``detail`` must contain (case-insensitive)
    params: str | bytes = '{"text_prompt": "liver"}'
    image: str = "phantom_000"
    model: str = MODEL
    upload: str | None = None  # a file name from ``write_bad_files``
    query: dict[str, Any] = field(default_factory=dict)


def _nifti(path: Path, data: np.ndarray, spacing: tuple[float, float, float] = (2.0, 2.0, 2.0)) -> None:
    nib.save(nib.Nifti1Image(data, np.diag([*spacing, 1.0])), path)


def write_bad_files(folder: Path) -> None:
    """Write every file the ``BAD_INPUTS`` uploads refer to."""
    folder.mkdir(parents=True, exist_ok=True)
    ct = np.full((32, 32, 24), -100, np.int16)
    _nifti(folder / "good.nii.gz", ct)
    good = (folder / "good.nii.gz").read_bytes()
    (folder / "truncated.nii.gz").write_bytes(good[: len(good) // 2])
    (folder / "empty.nii.gz").write_bytes(b"")
    (folder / "notes.nii.gz").write_bytes(gzip.compress(b"this is a radiology report, not an image\n" * 20))
    (folder / "photo.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    _nifti(folder / "slice_2d.nii.gz", np.zeros((64, 64), np.int16))
    _nifti(folder / "series_4d.nii.gz", np.zeros((16, 16, 16, 3), np.int16))
    _nifti(folder / "nan.nii.gz", np.full((16, 16, 16), np.nan, np.float32))
    _nifti(folder / "spacing_1e6.nii.gz", ct, (1e6, 1e6, 1e6))
    zero = nib.Nifti1Image(ct, None)
    zero.header.set_zooms((0.0, 2.0, 2.0))
    zero.set_qform(None, code=0)
    zero.set_sform(None, code=0)
    nib.save(zero, folder / "spacing_0.nii.gz")
    # 130^3 voxels at 5 mm: few raw voxels, but 2.2 M at the demo model's 5 mm spacing, over a 2 M budget.
    _nifti(folder / "over_budget.nii.gz", np.zeros((130, 130, 130), np.int16), (5.0, 5.0, 5.0))


def _p(**params: Any) -> str:
    return json.dumps(params)


SIXTEEN_PROMPTS_X_32 = _p(text_prompt=";".join("abcdefghijklmnop"), ensemble=32)

BAD_INPUTS: list[BadInput] = [
    BadInput("empty prompt", 400, "no prompt", _p(text_prompt="")),
    BadInput("whitespace-only prompt", 400, "empty", _p(text_prompt="   \t ")),
    BadInput("over-long prompt", 400, "limit is 512", _p(text_prompt="liver " * 100)),
    BadInput("non-UTF-8 bytes", 400, "not valid UTF-8", b'{"text_prompt": "liver \xff\xfe\xc3"}'),
    BadInput("unknown label index", 400, "not in the vocabulary", _p(label_prompt=[99])),
    BadInput("unknown model", 404, "unknown model", model="no_such_model"),
    BadInput("malformed params JSON", 400, "not valid JSON", '{"text_prompt": "liver"'),
    BadInput("params not an object", 400, "JSON object", '["liver"]'),
    BadInput("image id not in datastore", 404, "not in the datastore", image="phantom_999"),
    BadInput("server path as image id", 400, "not allowed", image="/etc/hostname"),
    BadInput("path in params.image", 400, "may not set 'image'", _p(text_prompt="liver", image="/etc/hostname")),
    BadInput("traversal label_tag", 400, "not allowed", _p(text_prompt="liver", label_tag="../../x", save_label=True)),
    BadInput("no image at all", 400, "no input", image=""),
    BadInput("unknown session", 404, "session", image="", query={"session_id": "0f9a-nope"}),
    BadInput("upload: zero bytes", 400, "empty (0 bytes)", upload="empty.nii.gz"),
    BadInput("upload: not an image (text)", 400, "no NIfTI header", upload="notes.nii.gz"),
    BadInput("upload: not an image (png)", 400, "could not read the image", upload="photo.png"),
    BadInput("upload: truncated NIfTI", 400, "could not read the image", upload="truncated.nii.gz"),
    BadInput("upload: 2D image", 400, "2D", upload="slice_2d.nii.gz"),
    BadInput("upload: 4D image", 400, "4D", upload="series_4d.nii.gz"),
    BadInput("upload: NaN-filled image", 400, "NaN", upload="nan.nii.gz"),
    BadInput("upload: spacing 0 mm", 400, "voxel size", upload="spacing_0.nii.gz"),
    BadInput("upload: spacing 1e6 mm", 400, "voxel size", upload="spacing_1e6.nii.gz"),
    BadInput("upload: over the voxel budget", 413, "budget", upload="over_budget.nii.gz"),
    BadInput("ensemble out of range", 400, "ensemble", _p(text_prompt="liver", ensemble=1000)),
    BadInput("nested JSON as a number", 400, "ensemble", _p(text_prompt="liver", ensemble={"x": 1})),
    BadInput("nested JSON as a prompt", 400, "text_prompt", _p(text_prompt={"a": 1})),
    BadInput("object as a switch", 400, "skip_writer", _p(text_prompt="liver", skip_writer={"a": 1})),
    BadInput("unknown result dtype", 400, "result_dtype", _p(text_prompt="liver", result_dtype="object")),
    BadInput("16 prompts x ensemble 32", 413, "denoiser calls", SIXTEEN_PROMPTS_X_32),
]
