"""The prompt vocabulary: the original indices stay, the real structures of datasets/realct are added with the
names and synonyms radiologists type, and no phrasing belongs to two structures."""

from __future__ import annotations

from textdiffseg.data.vocabulary import PromptVocabulary
from textdiffseg.prompt_match import LEGACY_TRAINED_STRUCTURES
from textdiffseg.prompts import MAX_PROMPTS

VOCAB = PromptVocabulary.load()


def test_original_indices_do_not_change() -> None:
    assert VOCAB.names[: len(LEGACY_TRAINED_STRUCTURES)] == list(LEGACY_TRAINED_STRUCTURES)
    assert VOCAB.index_map()["liver"] == 1 and VOCAB.index_map()["kidney cyst"] == 12


def test_real_structures_and_their_synonyms() -> None:
    expected = {
        "bladder": "urinary bladder",
        "urinary bladder": "urinary bladder",
        "IVC": "inferior vena cava",
        "aorta": "aorta",
        "gall bladder": "gallbladder",
        "stomach": "stomach",
        "L3": "L3 vertebra",
        "third lumbar vertebra": "L3 vertebra",
        "lung nodule": "lung tumor",
        "lung mass": "lung tumor",
        "RML": "right middle lobe",
        "lungs": "lungs",
        "heart": "heart",
        "pulmonary trunk": "pulmonary artery",
        "rib cage": "ribs",
        "psoas": "iliopsoas",
    }
    for text, name in expected.items():
        assert VOCAB.canonical(text) == name, text
    assert VOCAB.index_map()["stomach"] == 13 and len(VOCAB.names) == 56


def test_no_phrasing_names_two_structures_and_info_stays_a_list() -> None:
    owner: dict[str, str] = {}
    for name in VOCAB.names:
        for phrasing in VOCAB.prompts_for(name):
            assert owner.setdefault(phrasing.lower(), name) == name, f"{phrasing!r}: {owner[phrasing.lower()]}, {name}"
    labels = list(VOCAB.index_map())  # what /info serves as "labels" (OHIF appends to it)
    assert labels == VOCAB.names and len(labels) <= MAX_PROMPTS
