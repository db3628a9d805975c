"""The one typed parameter reader (``--conf``, infer and train requests, scoring's ``force``)."""

from __future__ import annotations

import pytest

from textdiffseg.params import FALSE_WORDS, TRUE_WORDS, ParamReader
from textdiffseg.prompts import PromptError


def test_values_arrive_as_strings_numbers_or_booleans_and_blank_means_default() -> None:
    read = ParamReader(
        {"n": " 7 ", "f": 3.0, "x": "0.5", "b": "Yes", "c": "small", "blank": "", "none": None}, "conf"
    )
    assert read.integer("n", 1, 0, 10) == 7 and read.integer("f", 1, 0, 10) == 3
    assert read.number("x", 0.1, 0.0, 1.0) == 0.5 and read.flag("b", False) is True
    assert read.choice("c", "tiny", {"tiny", "small"}) == "small"
    assert read.integer("blank", 4, 0, 10) == 4 and read.flag("none", True) is True
    assert read.integer("missing", 9, 0, 10) == 9


def test_one_set_of_true_and_false_words() -> None:
    for word in TRUE_WORDS:
        assert ParamReader({"k": word.upper()}, "conf").flag("k", False) is True
    for word in FALSE_WORDS:
        assert ParamReader({"k": word}, "conf").flag("k", True) is False
    assert ParamReader({"k": 1}, "conf").flag("k", False) is True


@pytest.mark.parametrize(
    ("value", "read"),
    [
        ("11", lambda r: r.integer("k", 1, 0, 10)),
        ("1.5", lambda r: r.integer("k", 1, 0, 10)),
        (2.5, lambda r: r.integer("k", 1, 0, 10)),
        (True, lambda r: r.integer("k", 1, 0, 10)),
        ([3], lambda r: r.integer("k", 1, 0, 10)),
        ("1", lambda r: r.number("k", 0.5, 0.0, 1.0)),
        ("maybe", lambda r: r.flag("k", False)),
        ("huge", lambda r: r.choice("k", "tiny", {"tiny"})),
    ],
)
def test_bad_values_give_one_line_errors_of_the_callers_type_naming_the_key(value: object, read) -> None:  # noqa: ANN001
    with pytest.raises(PromptError, match=r"^infer request 'k': expected .*, got ") as caught:
        read(ParamReader({"k": value}, "infer request", PromptError))
    assert "\n" not in str(caught.value)


def test_first_of_list_collapses_client_lists() -> None:
    read = ParamReader({"k": ["5"], "empty": [], "d": ("cpu", "cuda")}, "train request", first_of_list=True)
    assert read.integer("k", 1, 1, 10) == 5 and read.integer("empty", 2, 1, 10) == 2 and read.text("d", "") == "cpu"
