"""``scripts/diagnose_prompt.py``: which part of a model loses a structure (label latent, denoiser, sampler)."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import diagnose_prompt  # noqa: E402


def test_a_trained_structure_survives_every_part_and_an_absent_one_is_named(
    trained_tiny, train_phantom_dir: Path  # noqa: ANN001
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
