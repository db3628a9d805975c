"""Where a structure gets lost inside the model: label autoencoder, denoiser or sampling.

``python scripts/diagnose_prompt.py CKPT FOLDER CASE NAME[,NAME...]``: for each structure, one window of the model's
size centred on it (the case resampled to the model's grid, as training does), and:

- **recon**: Dice of ``decode(encode(truth))``: can the label latent hold the structure at all?
- **denoised from t**: Dice of the denoiser's clean estimate from the true latent noised to step t (50 is nearly
  clean): does the denoiser keep a structure it is all but given?
- **sampled**: Dice of the served sampler (DDIM, the model's step count), and its mean probability inside the truth.
- **cells** (models with a fused head, ``ModelConfig.fused_seg_weight``): the head's read-out of the fused features,
  its Dice on the latent grid against the truth max-pooled there and its mean probability inside those cells: do the
  features the denoiser reads say where the structure is?

Used to show that the small model's pancreas, gallbladder and urinary bladder were lost in the denoiser, not in the
label latent (README "The shipped model").
"""

from __future__ import annotations

import random
import sys

import torch

from textdiffseg.checkpoint import load_for_inference
from textdiffseg.data.folders import load_folder
from textdiffseg.diffusion.sampling import sample_masks
from textdiffseg.diffusion.schedule import make_scheduler, x0_from_output
from textdiffseg.losses import cell_targets
from textdiffseg.model_scores import dice
from textdiffseg.train_data import prepare_cases, random_crop

NOISE_STEPS = (50, 300, 700, 999)


@torch.no_grad()
def diagnose(ckpt: str, folder: str, case_id: str, names: list[str]) -> list[dict]:
    """One row per structure (see the module docstring): ``name``, ``voxels``, ``recon``, ``denoised`` (t -> Dice),
    ``sampled``, ``inside`` (mean probability inside the truth); ``name`` and ``absent`` for one not in the case.
    """
    model, encoder = load_for_inference(ckpt)
    model.eval()
    cases = [c for c in load_folder(folder) if c.case_id == case_id]
    if not cases:
        raise SystemExit(f"error: no case {case_id!r} in {folder}")
    case = prepare_cases(cases, model.config)[0]
    scheduler = make_scheduler(model.config)
    rows: list[dict] = []
    for name in names:
        if name not in case.present:
            rows.append({"name": name, "absent": True})
            continue
        centre = case.target_mask(name).nonzero().float().mean(0).round().long().tolist()
        image, label = random_crop(case, model.config.roi_size, random.Random(0), centre=centre)
        truth = torch.isin(label, torch.tensor(case.targets[name], dtype=label.dtype)).float()[None, None]
        tokens, token_mask = encoder.encode([name])
        condition = model.condition(image[None], tokens, token_mask)
        latent = model.encode_label(truth)
        recon = torch.sigmoid(model.decode_label(latent, condition)) > 0.5
        denoised = {}
        for t in NOISE_STEPS:
            step = torch.tensor([t])
            noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(0))
            noisy = scheduler.add_noise(latent, noise, step)
            x0 = x0_from_output(scheduler, model.denoise(noisy, step, condition.fused), noisy, step).clamp(-1, 1)
            denoised[t] = dice(torch.sigmoid(model.decode_label(x0, condition)) > 0.5, truth.bool())
        probability = sample_masks(
            model, condition, model.config.sampling_steps, generator=torch.Generator().manual_seed(0)
        ).probability
        row = {
            "name": name,
            "voxels": int(truth.sum()),
            "recon": dice(recon, truth.bool()),
            "denoised": denoised,
            "sampled": dice(probability > 0.5, truth.bool()),
            "inside": float((probability * truth).sum() / truth.sum()),
        }
        if model.config.fused_seg_weight:
            cells = cell_targets(truth, model.config.downsample) > 0
            marked = torch.sigmoid(model.fused_head(condition.fused))
            row["cells"] = {
                "dice": dice(marked > 0.5, cells),
                "inside": float(marked[cells].mean()),
                "marked": int((marked > 0.5).sum()),
                "true": int(cells.sum()),
            }
        rows.append(row)
    return rows


def describe(row: dict, case_id: str) -> str:
    """One line of :func:`diagnose`'s output."""
    if row.get("absent"):
        return f"{row['name']}: not in {case_id}"
    steps = ", ".join(f"{t}: {d:.3f}" for t, d in row["denoised"].items())
    line = (
        f"{row['name']}: {row['voxels']} voxels in the window; recon {row['recon']:.3f}; denoised from t {steps}; "
        f"sampled {row['sampled']:.3f} (mean probability inside {row['inside']:.3f})"
    )
    if "cells" in row:
        c = row["cells"]
        line += (
            f"; fused head: cell Dice {c['dice']:.3f}, mean probability inside {c['inside']:.3f}, "
            f"{c['marked']} cells marked for {c['true']}"
        )
    return line


if __name__ == "__main__":
    if len(sys.argv) != 5:
        raise SystemExit(__doc__.split("\n\n")[1])
    for found in diagnose(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4].split(",")):
        print(describe(found, sys.argv[3]))
