"""Parse what a client asks to segment into an ordered list of prompts with their output label values.

Clients send free text (``text_prompt``: one prompt, several separated by ``;``, or a JSON list) and/or vocabulary
indices (``label_prompt``, as OHIF's class-prompt tab sends). Each prompt gets an output value: the vocabulary index
when the text is a known name or synonym (so OHIF's name-to-segment map stays right), otherwise the next value after
the vocabulary. Prompts are data only: they are never evaluated, used in paths or logged beyond their length limit.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass

from textdiffseg.data.vocabulary import PromptVocabulary

MAX_PROMPT_CHARS = 512
MAX_PROMPTS = 64  # per request; "no prompt" means the whole vocabulary, which must fit (56 entries)


class PromptError(ValueError):
    """The prompt request is malformed; the message says what to fix (served as HTTP 400/422)."""


@dataclass(frozen=True)
class ResolvedPrompt:
    """One prompt to segment and the value it gets in the output label map."""

    text: str  # what is fed to the text encoder
    value: int  # output label value (>= 1)
    name: str  # the name shown to users: the vocabulary name, or the text itself


def split_text_prompt(text_prompt: object) -> list[str]:
    """Split ``text_prompt`` (a string with ``;`` separators, a JSON list string, or a list) into prompts."""
    if isinstance(text_prompt, list | tuple):
        items: Sequence[object] = text_prompt
    elif isinstance(text_prompt, str):
        stripped = text_prompt.strip()
        if stripped.startswith("["):
            try:
                parsed = json.loads(stripped)
            except ValueError as err:
                raise PromptError(f"text_prompt looks like a JSON list but is not valid JSON: {err.msg}") from err
            if not isinstance(parsed, list):
                raise PromptError("text_prompt JSON must be a list of strings")
            items = parsed
        else:
            items = stripped.split(";")
    else:
        raise PromptError(f"text_prompt must be a string or a list of strings, not {type(text_prompt).__name__}")
    prompts = []
    for item in items:
        if not isinstance(item, str):
            raise PromptError(f"every prompt must be a string, got {type(item).__name__}")
        if len(item) > MAX_PROMPT_CHARS:
            raise PromptError(f"a prompt is {len(item)} characters long; the limit is {MAX_PROMPT_CHARS}")
        if "\x00" in item:
            raise PromptError("a prompt contains a NUL character")
        cleaned = " ".join(item.split())
        if cleaned:
            prompts.append(cleaned)
    return prompts


def _label_indices(label_prompt: object) -> list[int]:
    if isinstance(label_prompt, int) and not isinstance(label_prompt, bool):
        return [label_prompt]
    if isinstance(label_prompt, list | tuple) and all(
        isinstance(i, int) and not isinstance(i, bool) for i in label_prompt
    ):
        return list(label_prompt)
    raise PromptError("label_prompt must be a list of integer label indices (see labels in /info)")


def resolve_prompts(text_prompt: object, label_prompt: object, vocabulary: PromptVocabulary) -> list[ResolvedPrompt]:
    """Turn a request's ``text_prompt`` / ``label_prompt`` into prompts with output values.

    No prompt at all (both missing) means every vocabulary structure. A prompt that is present but empty or
    whitespace-only is an error, not "everything": the user typed something and would not expect all labels.
    Duplicates (the same structure asked twice) are kept once.
    """
    index = vocabulary.index_map()
    texts: list[str] = []
    if text_prompt is not None:
        texts = split_text_prompt(text_prompt)
        if not texts:
            raise PromptError("text_prompt is empty; type what to segment, e.g. 'liver' or 'left kidney; spleen'")
    indices: list[int] = []
    if label_prompt is not None and label_prompt != []:
        indices = _label_indices(label_prompt)
        for i in indices:
            if i not in index.values():
                raise PromptError(f"label_prompt index {i} is not in the vocabulary (valid: 1..{len(index)})")
    if text_prompt is None and not indices:
        texts = vocabulary.names
    resolved: list[ResolvedPrompt] = []
    seen: set[str] = set()
    next_free = len(index) + 1
    for i in indices:
        name = vocabulary.name_of_index(i)
        if name not in seen:
            seen.add(name)
            resolved.append(ResolvedPrompt(name, i, name))
    for text in texts:
        canonical = vocabulary.canonical(text)
        key = canonical or text.lower()
        if key in seen:
            continue
        seen.add(key)
        if canonical is not None:
            resolved.append(ResolvedPrompt(text, index[canonical], canonical))
        else:
            resolved.append(ResolvedPrompt(text, next_free, text))
            next_free += 1
    if len(resolved) > MAX_PROMPTS:
        raise PromptError(f"{len(resolved)} prompts in one request; the limit is {MAX_PROMPTS}")
    if next_free > 255:
        raise PromptError("too many free-text prompts for a uint8 label map")
    return resolved
