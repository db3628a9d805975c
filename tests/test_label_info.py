"""The one ``label_info`` reader: the rules both training targets and the DICOM-SEG datastore follow."""

from __future__ import annotations

import pytest

from textdiffseg.data.label_maps import targets_from_label_names
from textdiffseg.label_info import label_info_names, targets_from_label_info


def test_list_and_mapping_forms_give_the_same_names() -> None:
    listed = [{"name": " Left   kidney ", "idx": 3}, {"name": "Liver", "idx": 1.0}, {"name": "Spleen", "idx": "2"}]
    assert label_info_names(listed) == {3: "Left kidney", 1: "Liver", 2: "Spleen"}
    assert label_info_names({"Left kidney": 3, "Liver": 1.0, "Spleen": "2"}) == label_info_names(listed)
    assert label_info_names(tuple(listed)) == label_info_names(listed)


@pytest.mark.parametrize(
    "entry",
    [
        {"name": "x", "idx": 0},
        {"name": "x", "idx": -1},
        {"name": "x", "idx": True},
        {"name": "x", "idx": 1.5},
        {"name": "x", "idx": "a"},
        {"name": "x", "idx": None},
        {"name": "", "idx": 1},
        {"name": "   ", "idx": 1},
        {"name": 7, "idx": 1},
        "x",
    ],
)
def test_unusable_entries_are_skipped(entry: object) -> None:
    assert label_info_names([entry, {"name": "kept", "idx": 9}]) == {9: "kept"}


def test_later_entries_win_and_non_containers_name_nothing() -> None:
    assert label_info_names([{"name": "a", "idx": 1}, {"name": "b", "idx": 1}]) == {1: "b"}
    assert label_info_names(None) == {} and label_info_names("liver") == {}


def test_targets_drop_background_names_and_lower_free_text() -> None:
    info = [{"name": "Background", "idx": 1}, {"name": "Mystery Organ", "idx": 2}]
    assert targets_from_label_info(info) == {"mystery organ": (2,)}


def test_label_names_keep_the_vocabulary_spelling_and_group_without_case() -> None:
    targets = targets_from_label_names({1: "t12 VERTEBRA", 2: "Liver", 3: "liver tumor", 4: "My Lesion"})
    assert targets == {"T12 vertebra": (1,), "liver": (2, 3), "liver tumor": (3,), "my lesion": (4,)}
