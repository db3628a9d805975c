"""How each prompt was understood: the nearest structure the served model was trained on, and how near it is.

A model segments what it was trained on. A prompt is compared with every phrasing (vocabulary synonyms) of every
structure the checkpoint records as trained (``ModelConfig.extra["trained_structures"]``, written by
``textdiffseg.train_loop``), using the text encoder's sentence embedding (mean of its token states, as
sentence-transformers pools MiniLM) and cosine similarity. A prompt is *unknown*, and gets an empty mask and a
warning instead of a confident blob, when

* it names a vocabulary structure the model was not trained on ("aorta" asked of a phantom-only model), or
* it is free text whose nearest trained phrasing is less similar than :data:`UNKNOWN_BELOW`.

The threshold comes from measurements with the packaged encoder (all-MiniLM-L6-v2), nearest trained phrasing among
the 12 original or all 56 vocabulary structures: paraphrases 0.64-1.00 ("colonic wall" 0.64, "splenic" 0.71,
"spleen organ" 0.88, "kidney left" 0.94, "hepatic parenchyma" 1.00); nonsense 0.08-0.45 ("banana" 0.28-0.37,
"car engine" 0.30-0.32, "asdfgh" 0.18-0.35, "pizza" 0.36-0.45). 0.55 is the middle of that gap. Typos fall below
it ("right kidny" 0.39): the warning names the nearest structure so the user can retype. Anatomy the model never saw
can pass it ("T11 vertebra" -> T12 vertebra 0.91, "renal vein" -> portal vein 0.70): the answer says what the prompt
was understood as, with its similarity, so that is visible too.

Checkpoints written before structures were recorded were trained with the 12 structures the vocabulary had then
(:data:`LEGACY_TRAINED_STRUCTURES`), which is what they are taken to know.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812

from textdiffseg.config import ModelConfig
from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.networks.cross_attention import masked_token_mean
from textdiffseg.text.encoder import TextEncoder

logger = logging.getLogger(__name__)

UNKNOWN_BELOW = 0.55
TRAINED_STRUCTURES_KEY = "trained_structures"
# The vocabulary before issue 12: every checkpoint without a record was trained on (some of) these.
LEGACY_TRAINED_STRUCTURES: tuple[str, ...] = (
    "liver",
    "spleen",
    "left kidney",
    "right kidney",
    "kidney",
    "pancreas",
    "colon",
    "liver tumor",
    "kidney tumor",
    "pancreas tumor",
    "colon tumor",
    "kidney cyst",
)


def recorded_structures(config: ModelConfig) -> tuple[str, ...] | None:
    """The structures a checkpoint records as trained, or ``None`` for a checkpoint without a record."""
    recorded = config.extra.get(TRAINED_STRUCTURES_KEY)
    if not isinstance(recorded, list | tuple):
        return None
    return tuple(str(name) for name in recorded)


def trained_structures(config: ModelConfig) -> tuple[str, ...]:
    """What a model was trained on: its record, else :data:`LEGACY_TRAINED_STRUCTURES`."""
    recorded = recorded_structures(config)
    return LEGACY_TRAINED_STRUCTURES if recorded is None else recorded


def record_trained_structures(config: ModelConfig, names: Iterable[str]) -> None:
    """Write ``names`` (sorted, unique) into ``config`` so that checkpoints saved from it carry them."""
    config.extra[TRAINED_STRUCTURES_KEY] = sorted(set(names))


def sentence_embeddings(encoder: TextEncoder, texts: Sequence[str]) -> torch.Tensor:
    """``(N, hidden)`` unit vectors: the mean of each text's token states (the encoder caches those)."""
    tokens, mask = encoder.encode(list(texts))
    return F.normalize(masked_token_mean(tokens, mask), dim=-1)


@dataclass(frozen=True)
class PromptMatch:
    """How one prompt was understood."""

    text: str
    nearest: str  # the trained structure it is closest to (its own name when it is one)
    similarity: float  # cosine similarity to the nearest trained phrasing, in [-1, 1]
    known: bool
    reason: str = ""  # why it is unknown ("" when known)

    @property
    def warning(self) -> str | None:
        """The message shown to the user for an unknown prompt (``None`` when known)."""
        if self.known:
            return None
        return f"'{self.text}' is not a structure the served model was trained on ({self.reason}); its mask is empty"

    def as_json(self) -> dict[str, object]:
        """For an API answer: ``understood_as`` (the trained structure segmented; ``None`` when unknown),
        ``nearest_trained``, ``similarity`` (to its nearest phrasing) and ``known``."""
        return {
            "understood_as": self.nearest if self.known else None,
            "nearest_trained": self.nearest,
            "similarity": round(self.similarity, 3),
            "known": self.known,
        }


class PromptMatcher:
    """Matches prompts against the structures a model was trained on.

    Args:
        encoder: the model's text encoder.
        trained: the structures the model was trained on (see :func:`trained_structures`).
        vocabulary: gives each trained structure its phrasings and tells vocabulary names from free text
            (default: the built-in vocabulary).
        threshold: free text less similar than this to every trained phrasing is unknown.
    """

    def __init__(
        self,
        encoder: TextEncoder,
        trained: Sequence[str],
        vocabulary: PromptVocabulary | None = None,
        threshold: float = UNKNOWN_BELOW,
    ) -> None:
        if not trained:
            raise ValueError("a model trained on no structure cannot be matched against")
        self.encoder = encoder
        self.vocabulary = vocabulary or PromptVocabulary.load()
        self.threshold = threshold
        self.trained = tuple(dict.fromkeys(trained))
        self._trained_set = set(self.trained)
        known_names = set(self.vocabulary.names)
        self._phrasings = [
            (name, phrasing)
            for name in self.trained
            for phrasing in (self.vocabulary.prompts_for(name) if name in known_names else (name,))
        ]
        self._reference: torch.Tensor | None = None
        self._cache: dict[str, PromptMatch] = {}

    def _references(self) -> torch.Tensor:
        if self._reference is None:
            self._reference = sentence_embeddings(self.encoder, [p for _, p in self._phrasings])
        return self._reference

    def nearest(self, text: str) -> tuple[str, float]:
        """The trained structure nearest to ``text`` and the similarity of its nearest phrasing."""
        similarity = sentence_embeddings(self.encoder, [text])[0] @ self._references().T
        best = int(similarity.argmax())
        return self._phrasings[best][0], float(similarity[best])

    def similarity_to(self, text: str, structure: str) -> float:
        """Similarity of ``text`` to the nearest phrasing of one trained ``structure``."""
        similarity = sentence_embeddings(self.encoder, [text])[0] @ self._references().T
        rows = [i for i, (name, _) in enumerate(self._phrasings) if name == structure]
        return float(similarity[rows].max())

    def match(self, text: str) -> PromptMatch:
        """How ``text`` is understood (results are cached per text)."""
        if text in self._cache:
            return self._cache[text]
        canonical = self.vocabulary.canonical(text)
        if canonical in self._trained_set:
            result = PromptMatch(text, canonical, self.similarity_to(text, canonical), True)
        else:
            nearest, similarity = self.nearest(text)
            if canonical is not None:
                reason = (
                    f"'{canonical}' is in the vocabulary but not among the {len(self.trained)} structures this "
                    f"checkpoint learned; nearest: '{nearest}' at similarity {similarity:.2f}"
                )
                result = PromptMatch(text, nearest, similarity, False, reason)
            elif similarity >= self.threshold:
                result = PromptMatch(text, nearest, similarity, True)
            else:
                reason = f"nearest: '{nearest}' at similarity {similarity:.2f}, below {self.threshold:.2f}"
                result = PromptMatch(text, nearest, similarity, False, reason)
        self._cache[text] = result
        return result

    def match_all(self, texts: Sequence[str]) -> list[PromptMatch]:
        """:meth:`match` for each text, in order."""
        return [self.match(t) for t in texts]
