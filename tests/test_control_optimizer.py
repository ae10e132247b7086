"""AEOptimizer as a drop-in ``torch.optim`` optimizer at the caller's lr.

The problem: ``torch.manual_seed(seed)``; x ~ N(0, I) [256, 8], w ~ N(0, I) [8],
y = sin(x·w) + 0.1·N(0, 1); MLP 8→32 (tanh)→1 with torch's default init; full-batch
MSE, 300 steps. Measured (start → end, seeds 0, 1, 2):

* Adam (torch.optim.Adam):
  lr 1e-3: 0.646→0.367, 0.657→0.362, 0.637→0.390; lr 1e-2: →0.0048, 0.0035, 0.0030.
* AEOptimizer(update_rule="adam") after the fix:
  lr 1e-3: →0.174, 0.081, 0.138; lr 1e-2: →0.0006, 0.0012, 0.0020.
  Before (dither = σ·RMS(θ) uncapped, μmax = 0.99): →0.499, 0.516, 0.518 and
  →0.092, 0.051, 0.125 (up to 41x Adam).
* AEOptimizer() (default "sgd" rule) after the fix: →0.511, 0.510, 0.515 and
  →0.504, 0.501, 0.505 (frozen SGD: 0.551, 0.543, 0.538 and 0.503, 0.500, 0.505).
  Before: seed 2 at lr 1e-3 ended at 0.688, *above* its start 0.637 (the plateau
  rule boosted σ until the dither was ~1000x the step).
"""

from __future__ import annotations

import pytest
import torch

from aegym.control import AEConfig, AEOptimizer

STEPS = 300
# The AE optimizer (Adam rule) must end within this factor of Adam's final loss
# (measured: at most 0.47x, i.e. it beats Adam in all six cases).
ADAM_FACTOR = 1.5


def regression(seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.nn.Module]:
    torch.manual_seed(seed)
    x = torch.randn(256, 8)
    w = torch.randn(8)
    y = torch.sin(x @ w)[:, None] + 0.1 * torch.randn(256, 1)
    model = torch.nn.Sequential(torch.nn.Linear(8, 32), torch.nn.Tanh(), torch.nn.Linear(32, 1))
    return x, y, model


def fit(seed: int, lr: float, make_opt) -> tuple[float, float]:
    """(start, end) full-batch MSE after ``STEPS`` closure steps."""
    x, y, model = regression(seed)
    opt = make_opt(model.parameters(), lr)

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = torch.nn.functional.mse_loss(model(x), y)
        loss.backward()
        return loss

    with torch.no_grad():
        start = float(torch.nn.functional.mse_loss(model(x), y))
    for _ in range(STEPS):
        opt.step(closure)
    with torch.no_grad():
        end = float(torch.nn.functional.mse_loss(model(x), y))
    return start, end


def adam(params, lr):
    return torch.optim.Adam(params, lr=lr)


def ae_adam(params, lr):
    return AEOptimizer(params, lr=lr, config=AEConfig(update_rule="adam"))


def ae_default(params, lr):
    return AEOptimizer(params, lr=lr)


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize("lr", [1e-3, 1e-2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ae_adam_rule_descends_and_keeps_up_with_adam(seed: int, lr: float) -> None:
    start, end = fit(seed, lr, ae_adam)
    _, adam_end = fit(seed, lr, adam)
    assert end < start
    assert end < ADAM_FACTOR * adam_end, (end, adam_end)


@pytest.mark.parametrize("lr", [1e-3, 1e-2])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ae_default_never_ends_above_its_start(seed: int, lr: float) -> None:
    # The default (EMA-momentum SGD) rule is slow at these lrs; it must still descend.
    # Measured end/start <= 0.81 (seed 2, lr 1e-3: 0.637 -> 0.515; before: -> 0.688).
    start, end = fit(seed, lr, ae_default)
    assert end < 0.9 * start, (start, end)
