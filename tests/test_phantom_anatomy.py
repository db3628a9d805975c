"""``anatomy="wide"`` and ``"real"`` phantoms (issue 12 part 3): organs of other sizes and places, on their own side
of the body; "real" around a real abdomen's organ positions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from textdiffseg.data.phantom import LABEL_VALUE, PhantomConfig, generate_case, main
from textdiffseg.data.phantom_anatomy import REAL_OFFSETS

COARSE = (4.0, 4.0, 4.0)
ORGANS = ("liver", "spleen", "left kidney", "right kidney", "pancreas", "colon")


def _organ_stats(label: np.ndarray) -> dict[str, tuple[np.ndarray, int]]:
    """Organ -> (centroid in voxels, voxel count); tumours count as their host, as the training targets do."""
    out = {}
    for name in ORGANS:
        values = [LABEL_VALUE[name]]
        host = "kidney" if "kidney" in name else name
        if f"{host} tumor" in LABEL_VALUE:
            values.append(LABEL_VALUE[f"{host} tumor"])
        mask = np.isin(label, values)
        if mask.any():
            out[name] = (np.argwhere(mask).mean(0), int(mask.sum()))
    return out


def test_wide_anatomy_moves_and_resizes_organs_far_more_than_the_default_series() -> None:
    moves, size_changes = [], []
    for index in range(4):
        default = _organ_stats(generate_case(7, index, PhantomConfig(spacing=COARSE)).label)
        wide = _organ_stats(generate_case(7, index, PhantomConfig(spacing=COARSE, anatomy="wide")).label)
        for name in set(default) & set(wide):
            moves.append(float(np.linalg.norm((wide[name][0] - default[name][0]) * np.array(COARSE))))
            size_changes.append(abs(np.log(wide[name][1] / default[name][1])))
    assert np.mean(moves) > 6.0, f"organs moved {np.mean(moves):.1f} mm on average"
    assert max(size_changes) > np.log(1.3), "some organ changed its volume by more than 30 %"


def test_wide_anatomy_keeps_every_organ_on_its_side_and_is_reproducible() -> None:
    for index in range(6):
        case = generate_case(11, index, PhantomConfig(spacing=COARSE, anatomy="wide"))
        stats = _organ_stats(case.label)
        midline = (np.argwhere(case.image > -500)[:, 0].min() + np.argwhere(case.image > -500)[:, 0].max()) / 2
        side = {
            name: np.sign(stats[name][0][0] - midline) for name in ("liver", "spleen", "left kidney", "right kidney")
        }
        assert side["liver"] == side["right kidney"] == -side["spleen"] == -side["left kidney"] != 0, (index, side)
    again = generate_case(11, 5, PhantomConfig(spacing=COARSE, anatomy="wide"))
    assert np.array_equal(again.label, case.label) and np.array_equal(again.image, case.image)


def test_anatomy_option_is_checked_and_reaches_the_cli(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="anatomy"):
        generate_case(0, 0, PhantomConfig(spacing=COARSE, anatomy="odd"))
    assert (
        main(["--out", str(tmp_path / "p"), "--n", "1", "--spacing", *map(str, COARSE), "--anatomy", "wide", "--quiet"])
        == 0
    )
    assert (tmp_path / "p" / "imagesTr" / "phantom_000.nii.gz").exists()
    with pytest.raises(SystemExit):
        main(["--out", str(tmp_path / "q"), "--anatomy", "odd"])


def test_real_anatomy_moves_spleen_back_and_pancreas_forward_from_the_same_draws() -> None:
    """Same seed, same random variation: "real" differs from "wide" by the offsets measured on the real abdomen."""
    moves: dict[str, list[np.ndarray]] = {}
    for index in range(3):
        wide = generate_case(5, index, PhantomConfig(spacing=COARSE, anatomy="wide"))
        real = generate_case(5, index, PhantomConfig(spacing=COARSE, anatomy="real"))
        wide_stats, real_stats = _organ_stats(wide.label), _organ_stats(real.label)
        for name in (*REAL_OFFSETS, "liver"):
            if name in wide_stats and name in real_stats:  # world mm (RAS+: +x the patient's right, +y anterior)
                moves.setdefault(name, []).append(real.affine[:3, :3] @ (real_stats[name][0] - wide_stats[name][0]))
    mean = {name: np.mean(values, axis=0) for name, values in moves.items()}
    kidneys = np.mean(moves["left kidney"] + moves["right kidney"], axis=0)
    # offsets x half-depth 100-130 mm: spleen 0.21 back, pancreas 0.20 forward, kidneys 0.15 forward
    assert mean["spleen"][1] < -12 and mean["pancreas"][1] > 12 and kidneys[1] > 8, mean
    assert mean["spleen"][0] < -8 and mean["pancreas"][0] < -8, "spleen and pancreas also move to the left"
    assert np.linalg.norm(mean["liver"]) < 3, "an organ REAL_OFFSETS does not list stays where the draws put it"


def test_real_anatomy_reaches_the_cli(tmp_path: Path) -> None:
    args = ["--out", str(tmp_path / "p"), "--n", "1", "--spacing", *map(str, COARSE), "--anatomy", "real", "--quiet"]
    assert main(args) == 0 and (tmp_path / "p" / "labelsTr" / "phantom_000.nii.gz").exists()
