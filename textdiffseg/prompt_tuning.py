"""Teaching a trained model new structures by prompt tuning: learned prompts grown, the network frozen.

``--tune prompts`` (``textdiffseg.train_loop``) and ``/train``'s default for labels of structures the served model
never learned. See :mod:`textdiffseg.networks.learned_prompts` for why the rest of the network stays as it was.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import Any

import torch

from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.networks.learned_prompts import initial_tokens
from textdiffseg.networks.model import TextDiffSeg
from textdiffseg.prompt_match import trained_structures
from textdiffseg.text.encoder import TextEncoder

TUNE_MODES = ("all", "prompts")
# Adapters are convolutions, tokens are embeddings: Adam's step size suits each at a different rate (measured on the
# one-label ribs task with tokens at 1e-2 and adapters at 1e-3).
ADAPTER_LR_RATIO = 0.1


def new_structures(model: TextDiffSeg, structures: Iterable[str]) -> list[str]:
    """The ``structures`` the model was not trained on (in the order given, once each)."""
    known = set(trained_structures(model.config))
    return [name for name in dict.fromkeys(structures) if name not in known]


def with_learned_prompts(model: TextDiffSeg, names: Sequence[str], encoder: TextEncoder) -> TextDiffSeg:
    """The same model with a learned prompt for each of ``names`` it has none for: the prompts it has keep their
    tokens and adapters, a new one starts from the encoder's tokens of its name (:func:`initial_tokens`) and an
    adapter that adds nothing yet."""
    have = tuple(model.config.learned_prompts)
    added = [name for name in dict.fromkeys(names) if name not in have]
    if not added:
        return model
    config = replace(model.config, learned_prompts=(*have, *added), extra=dict(model.config.extra))
    grown = TextDiffSeg(config)
    state = model.state_dict()
    start = [initial_tokens(encoder.encode([name])[0][0], config.learned_prompt_length) for name in added]
    old = state.get("learned_prompts.tokens", torch.zeros(0, *start[0].shape))
    state["learned_prompts.tokens"] = torch.cat([old, torch.stack(start).to(old.dtype)])
    fresh = grown.state_dict()
    state.update({key: value for key, value in fresh.items() if key not in state})  # the new adapters
    grown.load_state_dict(state)
    return grown.train(model.training)


def prompt_parameters(model: TextDiffSeg, lr: float) -> list[dict[str, Any]]:
    """Freeze every weight of ``model`` but its learned prompts, and return those as optimiser parameter groups
    (what a prompts-only run trains): the tokens at ``lr``, the adapters at ``ADAPTER_LR_RATIO * lr``."""
    if not model.config.learned_prompts:
        raise ValueError("the model has no learned prompts to train")
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for parameter in model.learned_prompts.parameters():
        parameter.requires_grad_(True)
    adapters = list(model.learned_prompts.adapters.parameters())
    return [
        {"params": [model.learned_prompts.tokens], "lr": lr},
        {"params": adapters, "lr": ADAPTER_LR_RATIO * lr, "lr_scale": ADAPTER_LR_RATIO},  # kept by the schedule
    ]


def structure_of(prompt: str, vocabulary: PromptVocabulary) -> str:
    """The structure a training prompt names: its vocabulary entry (paraphrases included), else the text itself (a
    site's free-text label name is prompted as is)."""
    return vocabulary.canonical(prompt) or prompt
