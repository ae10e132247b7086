"""Argument checks shared by agents' commands: a bad value raises ``ValueError``
naming the argument, the value and what is allowed (the commands turn it into one
``error: ...`` line and exit code 2)."""

from __future__ import annotations

from typing import Any

import numpy as np


def check_count(name: str, value: Any, minimum: int = 1) -> int:
    """``value`` as an int if it is an integer (not a bool) >= ``minimum``.

    :param name: the argument's name, for the message.
    :param value: the value.
    :param minimum: the smallest allowed value.
    :raises ValueError: anything else.
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        allowed = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)
