"""``scripts/prompt_extent.py``: where a raw mask lies along the scan against the truth."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import prompt_extent  # noqa: E402


def test_a_learned_organ_lies_where_its_truth_is_and_the_table_says_so(
    trained_tiny,
    train_phantom_dir: Path,
    capsys: pytest.CaptureFixture[str],  # noqa: ANN001
) -> None:
    case_id, ckpt = trained_tiny.cases[0].case_id, str(trained_tiny.run_dir / "model.pt")
    (liver,) = prompt_extent.extent(str(train_phantom_dir), case_id, ["liver"], ckpt)
    # the tiny model learned the liver (whole-CT Dice > 0.8 in test_model_behaviour)
    assert liver["dice"] > 0.6 and liver["precision"] > 0.5 and liver["recall"] > 0.5, liver
    assert liver["truth_slices"] is not None and liver["mask_slices"] is not None
    assert liver["below"] < 0.1 * liver["voxels"], "most of a good liver mask is not under the liver"
    prompt_extent.main(str(train_phantom_dir), case_id, ["liver"], [f"tiny={ckpt}"])
    row = capsys.readouterr().out.splitlines()[2]
    assert row.startswith(f"| tiny | liver | {liver['dice']:.3f} |") and f"of {liver['voxels']} |" in row


def test_a_structure_the_folder_does_not_label_or_a_missing_case_is_a_one_line_error(train_phantom_dir: Path) -> None:
    with pytest.raises(SystemExit, match="labels no brain"):
        prompt_extent.extent(str(train_phantom_dir), "phantom_000", ["liver", "brain"], "unused.pt")
    with pytest.raises(SystemExit, match="no case 'phantom_999'"):
        prompt_extent.extent(str(train_phantom_dir), "phantom_999", ["liver"], "unused.pt")
