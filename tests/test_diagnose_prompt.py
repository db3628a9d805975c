"""``scripts/diagnose_prompt.py``: which part of a model loses a structure (label latent, denoiser, sampler)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import diagnose_prompt  # noqa: E402


def test_a_trained_structure_survives_every_part_and_an_absent_one_is_named(
    trained_tiny,
    train_phantom_dir: Path,  # noqa: ANN001
) -> None:
    case_id = trained_tiny.cases[0].case_id
    liver, brain = diagnose_prompt.diagnose(
        str(trained_tiny.run_dir / "model.pt"), str(train_phantom_dir), case_id, ["liver", "brain"]
    )
    assert brain == {"name": "brain", "absent": True}
    assert diagnose_prompt.describe(brain, case_id) == f"brain: not in {case_id}"
    assert liver["voxels"] > 0 and set(liver["denoised"]) == set(diagnose_prompt.NOISE_STEPS)
    # the tiny model learned the liver (its whole-CT Dice is > 0.8 in test_model_behaviour): each part keeps it
    assert liver["recon"] > 0.6, liver
    assert liver["denoised"][50] > 0.6, liver
    assert liver["sampled"] > 0.6 and liver["inside"] > 0.5, liver
    line = diagnose_prompt.describe(liver, case_id)
    assert line.startswith("liver: ") and f"recon {liver['recon']:.3f}" in line


def test_a_model_with_a_fused_head_also_reports_what_the_head_reads_from_the_features(
    trained_tiny,
    train_phantom_dir: Path,
    tmp_path: Path,  # noqa: ANN001
) -> None:
    from dataclasses import replace

    import torch

    from textdiffseg.checkpoint import save_checkpoint
    from textdiffseg.networks.model import TextDiffSeg

    headed = TextDiffSeg(replace(trained_tiny.model.config, fused_seg_weight=1.0))
    headed.load_state_dict(trained_tiny.model.state_dict(), strict=False)
    with torch.no_grad():  # a head that marks every cell: its Dice is the structure's share of the window's cells
        headed.fused_head.conv.weight.zero_()
        headed.fused_head.conv.bias.fill_(10.0)
    save_checkpoint(tmp_path / "headed.pt", headed)
    case_id = trained_tiny.cases[0].case_id
    (liver,) = diagnose_prompt.diagnose(str(tmp_path / "headed.pt"), str(train_phantom_dir), case_id, ["liver"])
    cells = liver["cells"]
    roi = headed.config.roi_size
    total = (roi[0] // 4) * (roi[1] // 4) * (roi[2] // 4)
    assert cells["marked"] == total and 0 < cells["true"] < total and cells["inside"] > 0.99, cells
    assert abs(cells["dice"] - 2 * cells["true"] / (cells["true"] + total)) < 1e-6, cells
    assert "fused head: cell Dice" in diagnose_prompt.describe(liver, case_id)
