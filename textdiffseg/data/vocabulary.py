"""The prompt vocabulary: canonical structure names with synonyms and paraphrases, kept as data.

The vocabulary lives in ``vocabulary.json`` next to this file (or any JSON file of the same shape, passed by path).
Its order fixes each structure's index, which MONAI Label serves as ``labels`` ``{name: index}``.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

DEFAULT_VOCABULARY_PATH = Path(__file__).with_name("vocabulary.json")


@dataclass(frozen=True)
class VocabularyEntry:
    """One segmentable structure: its canonical prompt and the paraphrases that mean the same thing."""

    name: str
    prompts: tuple[str, ...]


class PromptVocabulary:
    """Ordered list of structures with synonyms; maps free text back to a canonical name where it can."""

    def __init__(self, entries: list[VocabularyEntry]) -> None:
        if not entries:
            raise ValueError("a prompt vocabulary needs at least one entry")
        names = [e.name for e in entries]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate names in prompt vocabulary: {names}")
        self.entries = entries
        self._by_name = {e.name: e for e in entries}
        self._synonym_to_name = {p.strip().lower(): e.name for e in entries for p in (e.name, *e.prompts)}

    @classmethod
    def load(cls, path: str | Path | None = None) -> PromptVocabulary:
        """Read a vocabulary JSON file (``{"labels": [{"name": ..., "prompts": [...]}, ...]}``); default: built in."""
        path = Path(path) if path else DEFAULT_VOCABULARY_PATH
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            entries = [
                VocabularyEntry(str(e["name"]), tuple(str(p) for p in e.get("prompts", []))) for e in raw["labels"]
            ]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ValueError(f"cannot read prompt vocabulary {path}: {err}") from err
        return cls(entries)

    @property
    def names(self) -> list[str]:
        """Canonical names in vocabulary order."""
        return [e.name for e in self.entries]

    def index_map(self) -> dict[str, int]:
        """``{name: index}`` with indices starting at 1 (0 is background), as MONAI Label clients expect."""
        return {name: i + 1 for i, name in enumerate(self.names)}

    def name_of_index(self, index: int) -> str:
        """Canonical name for a 1-based label index; raises ``KeyError`` with the valid range otherwise."""
        if not 1 <= index <= len(self.entries):
            raise KeyError(f"label index {index} is not in the vocabulary (valid: 1..{len(self.entries)})")
        return self.entries[index - 1].name

    def prompts_for(self, name: str) -> tuple[str, ...]:
        """All phrasings for a canonical name (the name itself first)."""
        entry = self._by_name[name]
        return (entry.name, *[p for p in entry.prompts if p != entry.name])

    def sample_prompt(self, name: str, rng: random.Random) -> str:
        """A random phrasing of ``name`` for training-time prompt augmentation."""
        return rng.choice(self.prompts_for(name))

    def canonical(self, text: str) -> str | None:
        """The canonical name a free-text prompt is a known synonym of, or ``None`` for unknown text."""
        return self._synonym_to_name.get(text.strip().lower())

    def all_prompts(self) -> list[str]:
        """Every phrasing of every structure (for pre-computing text embeddings)."""
        return [p for e in self.entries for p in self.prompts_for(e.name)]
