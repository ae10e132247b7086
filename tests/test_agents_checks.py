"""agents.common.checks: one integer check for every command's arguments."""

from __future__ import annotations

import numpy as np
import pytest

from agents.common.checks import check_count


def test_accepts_integers_at_or_above_the_minimum() -> None:
    assert check_count("n", 3) == 3
    assert check_count("n", 0, 0) == 0
    got = check_count("n", np.int64(5))
    assert got == 5 and type(got) is int


@pytest.mark.parametrize(
    ("value", "minimum", "message"),
    [
        (0, 1, "n must be a positive integer, got 0"),
        (-1, 0, "n must be an integer >= 0, got -1"),
        (True, 1, "n must be a positive integer, got True"),
        (2.0, 1, "n must be a positive integer, got 2.0"),
        ("3", 2, "n must be an integer >= 2, got '3'"),
    ],
)
def test_rejects_with_a_message_naming_value_and_rule(value, minimum, message) -> None:
    with pytest.raises(ValueError, match="^" + message.replace("(", r"\(") + "$"):
        check_count("n", value, minimum)
