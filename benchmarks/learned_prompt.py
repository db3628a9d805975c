"""A learned prompt for a structure the model never learned, from ONE real CT label, in process: a quick check.

Run: ``python benchmarks/learned_prompt.py --structure ribs --train-case slicer_chest --test-case ts_abdomen``.
It takes the served checkpoint (``--ckpt``, default the shipped one), adds a learned prompt for ``--structure``
(``textdiffseg.prompt_tuning``), trains it for ``--minutes`` on the train case's label of that structure alone, with
``/train``'s patch recipe (half the patches centred on the structure, augmentation, cosine learning rate), the
network frozen, and prints the Dice of the structure, by its name and by a vocabulary synonym, on the test case and
on the train case itself, with the voxels painted, as JSON. ``--tokens-only`` leaves the adapter out (its rate 0).
``--organ-negatives N`` adds N patches a step from the other real cases (neither the train nor the test case) and
the default phantoms of ``--negatives-phantoms``, prompted with the new structure and supervised as "not it" only
on the voxels of their labelled organs (:data:`ORGANS`; :data:`textdiffseg.losses.UNKNOWN` elsewhere): an
experiment on whether a new structure carries to another patient once it is told what it is not. ``--compare-with
PROMPT`` also scores the served model's answer to a prompt it knows (``spine`` for ``lumbar spine``) against the
new structure's truth on both cases, before training: what the model paints already, the bar a learned part of a
known structure has to clear.

``benchmarks/new_structure.py`` measures the same over REST with ``/train``'s defaults; this one is the 4-minute
variant for comparing settings on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import random
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from monai.transforms import EnsureChannelFirst, LoadImage

from textdiffseg.augment import PatchAugmenter
from textdiffseg.checkpoint import load_for_inference
from textdiffseg.data.folders import LabelledCase, load_folder
from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.finetune import Recipe
from textdiffseg.inference import Segmenter
from textdiffseg.model_scores import dice
from textdiffseg.prompt_match import record_trained_structures, trained_structures
from textdiffseg.prompt_tuning import prompt_parameters, with_learned_prompts
from textdiffseg.train_data import PreparedCase, PromptedPatchSampler, exclusion_target, prepare_cases, random_crop
from textdiffseg.train_schedule import LearningRateSchedule
from textdiffseg.train_step import Trainer

ROOT = Path(__file__).resolve().parents[1]
# Soft-tissue organs and vessels a new bony or thin structure never overlaps (the negatives of --organ-negatives).
ORGANS = (
    "liver", "spleen", "left kidney", "right kidney", "kidney", "pancreas", "stomach", "gallbladder",
    "urinary bladder", "colon", "heart", "aorta", "inferior vena cava", "lungs", "left lung", "right lung",
)  # fmt: skip


class OrganNegatives:
    """Patches of other cases prompted with the new structure: 0 on their labelled organs, unknown elsewhere."""

    def __init__(self, cases: list[PreparedCase], roi: tuple[int, int, int], structure: str, seed: int) -> None:
        organ_values = [sorted({v for name in ORGANS if name in c.targets for v in c.targets[name]}) for c in cases]
        self.cases = [(case, values) for case, values in zip(cases, organ_values) if values]
        if not self.cases:
            raise ValueError(f"no case labels any of {', '.join(ORGANS)}: nothing to tell {structure!r} it is not")
        self.roi, self.structure, self.rng = roi, structure, random.Random(seed)

    def sample(self) -> tuple[torch.Tensor, list[str], torch.Tensor]:
        """One patch ``(1, C, *roi)``, the prompt, and its target ``(1, 1, *roi)``."""
        case, organ_values = self.rng.choice(self.cases)
        image, label = random_crop(case, self.roi, self.rng)
        return image[None], [self.structure], exclusion_target(label, organ_values)[None, None]


def scores(segmenter: Segmenter, case: LabelledCase, structure: str, prompts: list[str]) -> dict:
    """Dice and voxels painted per prompt on one case, and the truth's voxels."""
    loader = LoadImage(image_only=True)
    truth = np.isin(np.asarray(loader(str(case.label))).round().astype(np.int32), case.targets[structure])
    prediction = segmenter.predict(EnsureChannelFirst()(loader(str(case.image))), prompts)
    masks = [prediction.probability[i] > 0.5 for i in range(len(prompts))]
    return {
        "dice": [round(dice(m, truth), 4) for m in masks],
        "painted": [int(m.sum()) for m in masks],
        "truth": int(truth.sum()),
    }


def run(a: argparse.Namespace) -> dict:
    """Train the learned prompt and score it; returns the record."""
    torch.set_num_threads(a.threads)
    recipe = Recipe()
    model, encoder = load_for_inference(a.ckpt)
    if a.structure in trained_structures(model.config):
        raise SystemExit(f"error: the checkpoint already knows {a.structure!r}")
    cases = {c.case_id: c for c in load_folder(a.data)}
    train_case, test_case = cases[a.train_case], cases[a.test_case]
    served = {}
    if a.compare_with:
        segmenter = Segmenter(model, encoder)
        served = {
            "prompt": a.compare_with,
            "test": scores(segmenter, test_case, a.structure, [a.compare_with]),
            "train": scores(segmenter, train_case, a.structure, [a.compare_with]),
        }
    model.config = replace(model.config, learned_prompt_length=a.tokens, extra=dict(model.config.extra))
    model = with_learned_prompts(model, [a.structure], encoder)
    groups = prompt_parameters(model, a.lr)
    if a.tokens_only:
        groups[1]["lr"] = groups[1]["lr_scale"] = 0.0
    site = LabelledCase(
        train_case.case_id, train_case.image, train_case.label, {a.structure: train_case.targets[a.structure]}
    )
    sampler = PromptedPatchSampler(
        prepare_cases([site], model.config),
        PromptVocabulary.load(),
        model.config.roi_size,
        a.prompts_per_volume,
        foreground_fraction=recipe.foreground_fraction,
        augment=PatchAugmenter(model.config.input_windows, seed=a.seed + 1),
        seed=a.seed,
    )
    negatives = None
    if a.organ_negatives:
        others = [c for c in cases.values() if c.case_id not in (a.train_case, a.test_case)]
        phantoms = load_folder(a.negatives_phantoms) if a.negatives_phantoms else []
        prepared = prepare_cases(others + phantoms, model.config)
        try:
            negatives = OrganNegatives(prepared, model.config.roi_size, a.structure, a.seed)
        except ValueError as err:
            raise SystemExit(f"error: {err}") from None
    trainer = Trainer(model, encoder, lr=a.lr, seed=a.seed, parameters=groups)
    schedule = LearningRateSchedule(trainer.optimizer, a.lr, recipe.lr_schedule, 10**9, 60.0 * a.minutes)
    start, losses = time.perf_counter(), []
    while time.perf_counter() - start < 60.0 * a.minutes:
        schedule.update(trainer.state.step, time.perf_counter() - start)
        batch = [sampler.sample(), *(negatives.sample() for _ in range(a.organ_negatives if negatives else 0))]
        losses.append(trainer.step(batch)["loss"])
    model.eval()
    record_trained_structures(model.config, [*trained_structures(model.config), a.structure])
    segmenter = Segmenter(model, encoder)
    synonyms = [p for p in PromptVocabulary.load().prompts_for(a.structure) if p != a.structure][:1]
    prompts = [a.structure, *synonyms]
    return {
        "settings": {k: str(v) for k, v in vars(a).items()},
        "steps": trainer.state.step,
        "seconds": round(time.perf_counter() - start, 1),
        "loss_first_last": [round(float(np.mean(losses[:20])), 4), round(float(np.mean(losses[-20:])), 4)],
        "prompts": prompts,
        "test": scores(segmenter, test_case, a.structure, prompts),
        "train": scores(segmenter, train_case, a.structure, prompts),
        "served_before": served,
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command line."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--ckpt", type=Path, default=ROOT / "apps" / "textdiffseg_app" / "model" / "pretrained_textdiffseg.pt"
    )
    p.add_argument("--structure", default="ribs")
    p.add_argument("--train-case", default="slicer_chest")
    p.add_argument("--test-case", default="ts_abdomen")
    p.add_argument("--data", type=Path, default=ROOT / "datasets" / "realct")
    p.add_argument("--minutes", type=float, default=4.0)
    p.add_argument("--lr", type=float, default=Recipe().prompt_lr, help="the tokens' peak rate")
    p.add_argument("--tokens", type=int, default=8, help="tokens of the learned prompt")
    p.add_argument("--tokens-only", action="store_true", help="no adapter")
    p.add_argument("--prompts-per-volume", type=int, default=4)
    p.add_argument("--organ-negatives", type=int, default=0, help="negative patches a step (see the docstring)")
    p.add_argument("--negatives-phantoms", type=Path, help="a phantom folder for --organ-negatives")
    p.add_argument("--compare-with", help="a prompt the model knows, scored against the structure's truth first")
    p.add_argument("--seed", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, help="also write the JSON here")
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    a = parse_args(argv)
    record = run(a)
    text = json.dumps(record, indent=2)
    print(text)
    if a.out is not None:
        a.out.parent.mkdir(parents=True, exist_ok=True)
        a.out.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
