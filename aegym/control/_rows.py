"""Row selection for NamedTuples of batched tensors (shared by the law and the plant)."""

from __future__ import annotations

from typing import TypeVar

import torch

T = TypeVar("T", bound=tuple)


def where_rows(mask: torch.Tensor, new: torch.Tensor, old: torch.Tensor) -> torch.Tensor:
    """``new`` in the rows where ``mask [B]`` is true, ``old`` elsewhere (any trailing dims)."""
    return torch.where(mask.view(-1, *([1] * (new.ndim - 1))), new, old)


def select_rows(mask: torch.Tensor, new: T, old: T) -> T:
    """Field-wise :func:`where_rows` of two NamedTuples of ``[B, ...]`` tensors.

    Fields that are None in both stay None.
    """
    fields = [None if n is None else where_rows(mask, n, o) for n, o in zip(new, old, strict=True)]
    return type(new)(*fields)
