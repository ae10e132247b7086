"""Counter-based per-row Gaussian noise."""

from __future__ import annotations

import pytest
import torch

from aegym.control.noise import normal


def test_a_rows_draw_depends_only_on_its_key_and_counter() -> None:
    key = torch.tensor([7, 2**62 - 1, 0, 123456789])
    counter = torch.tensor([0, 5, 3, 1])
    batch = normal(key, counter, (2, 3))
    assert batch.shape == (4, 2, 3) and batch.dtype == torch.float32
    for i in range(4):
        alone = normal(key[i : i + 1], counter[i : i + 1], (2, 3))
        assert torch.equal(alone[0], batch[i])
    assert torch.equal(batch, normal(key, counter, (2, 3)))
    assert not torch.equal(batch, normal(key, counter + 1, (2, 3)))
    assert not torch.equal(batch, normal(key, counter, (2, 3), stream=1))


def test_draws_look_standard_normal_and_independent() -> None:
    key = torch.arange(64)
    x = torch.cat(
        [normal(key, torch.full((64,), c), (500,), dtype=torch.float64) for c in range(4)]
    )
    assert abs(float(x.mean())) < 0.02 and float(x.std()) == pytest.approx(1.0, abs=0.02)
    assert float((x.abs() > 3).double().mean()) == pytest.approx(0.0027, abs=0.0015)
    rows = x.reshape(256, 500)
    corr = torch.corrcoef(rows)
    off = corr[~torch.eye(256, dtype=torch.bool)]
    assert float(off.abs().max()) < 0.25


def test_stream_is_validated() -> None:
    with pytest.raises(ValueError, match="stream"):
        normal(torch.zeros(1, dtype=torch.long), torch.zeros(1, dtype=torch.long), (1,), stream=-1)
