"""The prompt parser: free text, ';' lists, JSON lists, label indices, and clear errors (with a property test)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.prompts import MAX_PROMPT_CHARS, PromptError, resolve_prompts, split_text_prompt

VOCAB = PromptVocabulary.load()
INDEX = VOCAB.index_map()


def test_single_and_multiple_prompts_get_vocabulary_values() -> None:
    resolved = resolve_prompts("liver; left kidney", None, VOCAB)
    assert [(r.name, r.value) for r in resolved] == [("liver", INDEX["liver"]), ("left kidney", INDEX["left kidney"])]
    as_json = resolve_prompts('["liver", "left kidney"]', None, VOCAB)
    assert [r.value for r in as_json] == [r.value for r in resolved]


def test_synonyms_map_to_their_structure_and_free_text_gets_new_values() -> None:
    resolved = resolve_prompts("Hepatic Lesion; appendix; spleen", None, VOCAB)
    assert resolved[0].name == "liver tumor" and resolved[0].value == INDEX["liver tumor"]
    assert resolved[0].text == "Hepatic Lesion"  # the encoder sees what the user typed
    assert resolved[1].name == "appendix" and resolved[1].value == len(INDEX) + 1
    assert resolved[2].value == INDEX["spleen"]


def test_label_prompt_indices_and_no_prompt_means_everything() -> None:
    resolved = resolve_prompts(None, [INDEX["spleen"], INDEX["pancreas"]], VOCAB)
    assert [r.name for r in resolved] == ["spleen", "pancreas"]
    everything = resolve_prompts(None, None, VOCAB)
    assert [r.name for r in everything] == VOCAB.names


def test_duplicates_are_dropped() -> None:
    resolved = resolve_prompts("liver; the liver; LIVER", [INDEX["liver"]], VOCAB)
    assert len(resolved) == 1


@pytest.mark.parametrize(
    ("text", "labels", "message"),
    [
        ("", None, "empty"),
        ("   ;  ; ", None, "empty"),
        ("x" * (MAX_PROMPT_CHARS + 1), None, "limit"),
        ("[1, 2", None, "not valid JSON"),
        ('{"a": 1}', None, None),  # a dict-looking string is just free text
        ('["liver", 3]', None, "must be a string"),
        (None, [0], "not in the vocabulary"),
        (None, [99], "not in the vocabulary"),
        (None, "liver", "integer label indices"),
        (None, [True], "integer label indices"),
        (12, None, "string or a list"),
        ("a\x00b", None, "NUL"),
    ],
)
def test_bad_requests_are_refused_with_a_message(text: object, labels: object, message: str | None) -> None:
    if message is None:
        assert resolve_prompts(text, labels, VOCAB)[0].text == '{"a": 1}'
        return
    with pytest.raises(PromptError, match=message):
        resolve_prompts(text, labels, VOCAB)


@settings(max_examples=300, deadline=None)
@given(
    st.one_of(st.text(max_size=200), st.lists(st.text(max_size=40), max_size=6)),
    st.one_of(st.none(), st.lists(st.integers(min_value=-3, max_value=20), max_size=4)),
)
def test_parser_never_crashes_and_results_are_consistent(text: object, labels: object) -> None:
    try:
        resolved = resolve_prompts(text, labels, VOCAB)
    except PromptError:
        return
    assert resolved, "a request that parses yields at least one prompt"
    values = [r.value for r in resolved]
    assert len(values) == len(set(values)), "each output value names one prompt"
    assert all(1 <= v < 256 for v in values)
    for r in resolved:
        assert r.text == r.text.strip() and r.text and len(r.text) <= MAX_PROMPT_CHARS
        if r.value <= len(INDEX):
            assert VOCAB.name_of_index(r.value) == r.name


@given(st.lists(st.text(alphabet=st.characters(blacklist_characters=";\x00"), min_size=1, max_size=20), max_size=5))
def test_semicolon_split_keeps_every_non_blank_prompt(parts: list[str]) -> None:
    joined = ";".join(parts)
    if joined.strip().startswith("["):
        return
    assert split_text_prompt(joined) == [" ".join(p.split()) for p in parts if p.split()]
