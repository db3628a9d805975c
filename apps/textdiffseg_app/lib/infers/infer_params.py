"""Read the per-request infer parameters that clients send (prompts, ensemble size, steps, uncertainty output).

Prompt rule: clients send the model's config defaults back, so ``text_prompt: ""`` (the default) or a missing
``text_prompt`` means "no text typed", and then ``label_prompt`` (OHIF's class prompts) must name labels. With neither,
the request is refused with HTTP 400 naming both options: running every vocabulary label (12 prompts, 12x the time)
because the annotator forgot to type is not what anyone wants. Blank text (``"   "``, ``" ; "``, ``[]``) is a 400 too.
The other values are read with ``textdiffseg.params.ParamReader``; their errors are ``PromptError`` (HTTP 400).
Clicks (``points``/``point_labels``, ``foreground``/``background``) are read by ``click_params`` and apply to the
first prompt.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lib.configs.textdiffseg import MAX_ENSEMBLE, MAX_SAMPLING_STEPS
from lib.infers.click_params import parse_clicks
from textdiffseg.clicks import Clicks
from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.params import ParamReader
from textdiffseg.prompts import PromptError, ResolvedPrompt, resolve_prompts

MAX_SEED = 2**63 - 1
NO_PROMPT_MESSAGE = (
    "no prompt: type what to segment in text_prompt (e.g. 'liver; left kidney') or choose labels in label_prompt"
)


@dataclass(frozen=True)
class InferParams:
    """What one ``/infer/textdiffseg`` request asks for."""

    prompts: list[ResolvedPrompt]
    ensemble: int
    steps: int | None
    uncertainty: bool
    seed: int = 0
    postprocess: bool = True  # clean each mask by its anatomy (textdiffseg.postprocess)
    clicks: Clicks | None = None  # clicks on the first prompt (voxel indices of the image)
    fine_pass: bool = True  # zoom in when the checkpoint has a fine stage (textdiffseg.zoom_in)

    def prompt_clicks(self) -> list[Clicks | None] | None:
        """The clicks per prompt, as ``Segmenter.predict`` takes them (``None``: no clicks)."""
        if self.clicks is None:
            return None
        return [self.clicks, *([None] * (len(self.prompts) - 1))]


def parse_infer_params(
    data: Mapping[str, object], vocabulary: PromptVocabulary, default_ensemble: int, default_steps: int | None
) -> InferParams:
    """Validate a request (the dict MONAI Label passes to the infer task); raises ``PromptError`` (HTTP 400)."""
    text_prompt = data.get("text_prompt")
    if text_prompt == "":
        text_prompt = None
    label_prompt = data.get("label_prompt")
    if text_prompt is None and label_prompt in (None, []):
        raise PromptError(NO_PROMPT_MESSAGE)
    prompts = resolve_prompts(text_prompt, None if label_prompt in (None, []) else label_prompt, vocabulary)
    clicks = parse_clicks(data)
    read = ParamReader(data, "infer request", PromptError)
    return InferParams(
        prompts=prompts,
        ensemble=read.integer("ensemble", default_ensemble, 1, MAX_ENSEMBLE),
        steps=read.integer("sampling_steps", default_steps or 0, 0, MAX_SAMPLING_STEPS) or None,
        uncertainty=read.flag("uncertainty", False),
        seed=read.integer("seed", 0, 0, MAX_SEED),
        postprocess=read.flag("postprocess", True),
        clicks=clicks,
        fine_pass=read.flag("fine_pass", True),
    )
