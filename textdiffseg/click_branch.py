"""Give an existing model the click branch, computing exactly what it computed before (like ``widen_input``)."""

from __future__ import annotations

from dataclasses import replace

from textdiffseg.networks.model import TextDiffSeg

CLICK_CHANNELS = 2  # positive, negative


def add_click_branch(model: TextDiffSeg, channels: int = CLICK_CHANNELS) -> TextDiffSeg:
    """The same model with a click branch whose last layer is zero: every existing weight is kept, so text-only and
    clicked predictions stay exactly the old ones until training moves the branch. A model that already has the
    branch is returned as is."""
    if model.config.click_channels:
        return model
    wide = TextDiffSeg(replace(model.config, click_channels=channels, extra=dict(model.config.extra)))
    missing, unexpected = wide.load_state_dict(model.state_dict(), strict=False)
    if unexpected or any(not key.startswith(("click_encoder.", "click_decoder.")) for key in missing):
        raise ValueError(f"cannot add a click branch: unexpected {unexpected}, missing {missing}")
    return wide.to(next(model.parameters()).device).train(model.training)
