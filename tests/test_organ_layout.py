"""``scripts/organ_layout.py``: organ positions relative to the body, the figures README compares families with."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import organ_layout  # noqa: E402

from textdiffseg.data.phantom import PhantomConfig, write_dataset  # noqa: E402


def test_layout_puts_the_liver_right_the_spleen_left_and_the_real_layout_moves_them(tmp_path: Path) -> None:
    for anatomy in ("default", "real"):
        write_dataset(tmp_path / anatomy, n=2, seed=3, cfg=PhantomConfig(spacing=(5.0, 5.0, 5.0), anatomy=anatomy))
    default = organ_layout.folder_layout(tmp_path / "default", None, None)
    real = organ_layout.folder_layout(tmp_path / "real", None, None)
    right, anterior, volume = 0, 1, 3
    assert (default["liver"][:, right] > 0.2).all() and (default["spleen"][:, right] < -0.2).all()
    assert (default["liver"][:, volume] > 500).all(), "a liver of more than half a litre"
    assert real["spleen"][:, anterior].mean() < default["spleen"][:, anterior].mean() - 0.1
    assert real["pancreas"][:, anterior].mean() > default["pancreas"][:, anterior].mean() + 0.1


def test_a_folder_without_a_manifest_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert organ_layout.main([str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"organ_layout: {tmp_path}: no dataset.json"
    with pytest.raises(SystemExit):
        organ_layout.main([str(tmp_path), "--cases", "0"])
