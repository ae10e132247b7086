"""The batched plant: its formulas, masks, local tests, and one update for all callers."""

from __future__ import annotations

from types import SimpleNamespace

import gymnasium as gym
import numpy as np
import pytest
import torch
from torch.profiler import ProfilerActivity, profile

import aegym  # noqa: F401  (registers the ids)
from aegym.control import plant
from aegym.control.config import AEConfig
from aegym.control.optimizer import AEOptimizer
from aegym.envs.policies import AEGradientPolicy
from aegym.envs.scheduler import Gains

ADAM = AEConfig(update_rule="adam")
ones = torch.ones


def test_adam_bias_correction_is_exact_for_a_varying_momentum() -> None:
    gen = torch.Generator().manual_seed(0)
    grads = torch.randn(6, 2, 3, generator=gen, dtype=torch.float64)
    mus = torch.tensor([[0.9, 0.5], [0.7, 0.5], [0.2, 0.99], [0.95, 0.0], [0.6, 0.3], [0.9, 0.9]])
    mus = mus.double()
    alpha = torch.tensor([0.1, 0.02], dtype=torch.float64)
    state = plant.init_plant(2, 3, dtype=torch.float64)
    m = v = torch.zeros(2, 3, dtype=torch.float64)
    prod, beta2 = torch.ones(2, dtype=torch.float64), ADAM.adam_beta2
    for t, (g, mu) in enumerate(zip(grads, mus, strict=True), start=1):
        state, u = plant.filtered_update(state, g, alpha, mu, ADAM)
        m = mu[:, None] * m + (1 - mu[:, None]) * g
        v = beta2 * v + (1 - beta2) * g * g
        prod = prod * mu
        expected = (
            alpha[:, None]
            * (m / (1 - prod[:, None]))
            / ((v / (1 - beta2**t)).sqrt() + ADAM.adam_eps)
        )
        torch.testing.assert_close(u, expected, rtol=1e-12, atol=0)
    assert torch.equal(state.bias1, prod)


def test_sgd_rule_is_ema_momentum_times_alpha() -> None:
    cfg = AEConfig(update_rule="sgd")
    state = plant.init_plant(2, 2, "sgd", dtype=torch.float64)
    assert state.v is None and state.bias1 is None
    g = torch.tensor([[1.0, -2.0], [0.5, 4.0]], dtype=torch.float64)
    mu = torch.tensor([0.9, 0.0], dtype=torch.float64)
    alpha = torch.tensor([0.1, 0.2], dtype=torch.float64)
    state, u = plant.filtered_update(state, g, alpha, mu, cfg)
    state, u = plant.filtered_update(state, g, alpha, mu, cfg)
    h = torch.stack([0.9 * 0.1 * g[0] + 0.1 * g[0], g[1]])
    torch.testing.assert_close(u, alpha[:, None] * h, rtol=1e-15, atol=0)


def test_dither_is_shaped_by_each_rows_rms_with_a_floor() -> None:
    theta = torch.tensor([[3.0, -4.0], [0.0, 0.0]])
    eta = torch.tensor([[1.0, 2.0], [1.0, -1.0]])
    sigma = torch.tensor([0.1, 0.5])
    d = plant.dither(theta, sigma, eta, floor=0.01)
    rms = (12.5) ** 0.5
    torch.testing.assert_close(d, torch.tensor([[0.1 * rms, 0.2 * rms], [0.005, -0.005]]))
    assert plant.dither_shape(torch.zeros(3, 0), 0.2).tolist() == pytest.approx([0.2] * 3)


def test_local_test_judges_at_the_probed_theta_and_averages_in_winners() -> None:
    cfg = AEConfig(probe_scale=0.1, rho=0.25, n_probes=3)
    theta = torch.tensor([[0.5, 0.5], [0.2, 0.8], [0.4, 0.6]], dtype=torch.float64)
    loss = torch.tensor([1.0, 1.0, 1.0], dtype=torch.float64)
    noise = torch.randn(3, 3, 2, generator=torch.Generator().manual_seed(1)).double()
    seen: list[torch.Tensor] = []

    def evaluate(probes: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        seen.append(rows)
        # Row 0: probe 1 beats the loss; row 1 (not tested); row 2: none does, one NaN.
        table = torch.tensor([[2.0, 0.5, 0.9], [0.0, 0.0, 0.0], [3.0, float("nan"), 1.0]])
        return table[rows].double()

    mask = torch.tensor([True, False, True])
    res = plant.local_test(theta, loss, noise, evaluate, cfg, bounds=(0.0, 1.0), mask=mask)
    assert seen[0].tolist() == [0, 2]
    assert res.win.tolist() == [True, False, False] and res.tested.tolist() == mask.tolist()
    assert res.success.tolist() == pytest.approx([2 / 3, 0.0, 0.0])
    assert res.best_loss[0] == 0.5 and res.best_loss[1].isnan() and res.best_loss[2] == 1.0
    rms = theta[0].pow(2).mean().sqrt()
    probe = (theta[0] + 0.1 * rms * noise[0, 1]).clamp(0.0, 1.0)
    torch.testing.assert_close(res.best[0], probe, rtol=0, atol=1e-15)
    stepped = theta + 0.01
    mixed = plant.average_in(stepped, res, cfg.rho)
    torch.testing.assert_close(mixed[0], 0.75 * stepped[0] + 0.25 * probe, rtol=0, atol=1e-15)
    assert torch.equal(mixed[1:], stepped[1:])


@pytest.mark.parametrize("tested", [[True, False, True], [False, False, False], [True] * 3])
def test_dense_local_test_equals_the_gathered_one(tested: list[bool]) -> None:
    # The accelerator form (every row evaluated, verdicts masked: no host sync) gives
    # the result of the CPU form that renders only the tested rows.
    cfg = AEConfig(probe_scale=0.1, n_probes=3)
    gen = torch.Generator().manual_seed(3)
    theta, loss = torch.rand(3, 2, generator=gen), torch.ones(3)
    noise = torch.randn(3, 3, 2, generator=gen)
    table = torch.tensor([[2.0, 0.5, 0.9], [0.3, 0.2, 4.0], [3.0, float("nan"), 1.0]])
    rows_seen: list[list[int]] = []

    def evaluate(probes: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        rows_seen.append(rows.tolist())
        return table[rows]

    mask = torch.tensor(tested)
    args = (theta, loss, noise, evaluate, cfg, (0.0, 1.0), mask)
    sparse = plant.local_test(*args, dense=False)
    dense = plant.local_test(*args, dense=True)
    assert rows_seen[-1] == [0, 1, 2]  # dense: every row rendered
    for a, b in zip(sparse, dense, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0, equal_nan=True)
    assert plant.dense_probes("cpu") is False and plant.dense_probes("cuda") is True


def test_masked_rows_keep_theta_and_memory() -> None:
    state = plant.init_plant(3, 2)
    theta, grad = torch.rand(3, 2), torch.randn(3, 2)
    g = ones(3) * 0.1
    mask = torch.tensor([True, False, True])
    res = plant.step(state, theta, grad, g, g * 9, g, ADAM, noise=torch.randn(3, 2), mask=mask)
    assert torch.equal(res.theta[1], theta[1]) and torch.equal(res.state.h[1], state.h[1])
    assert res.state.bias1[1] == 1.0 and res.state.bias1[0] == pytest.approx(0.9)
    assert not res.update[1].any() and not res.dither[1].any() and not res.move[1].any()
    torch.testing.assert_close(res.theta[0], theta[0] + res.move[0])


def test_plant_step_reads_nothing_back_to_the_host() -> None:
    state = plant.init_plant(4, 3)
    theta, g = torch.rand(4, 3), ones(4) * 0.1
    probes = plant.ProbeResult(theta, g, g > 0, g, g > 0)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        plant.step(
            state,
            theta,
            torch.randn(4, 3),
            g,
            g,
            g,
            ADAM,
            noise=torch.randn(4, 3),
            bounds=(0.0, 1.0),
            mask=g > 0,
            probes=probes,
        )
    assert not {e.name for e in prof.events()} & {"aten::item", "aten::_local_scalar_dense"}


# ------------------------------------------------------------ one update, three callers

B, F, STEPS = 3, 4, 6
ALPHA, MU = 2.0**-6, 0.5  # exact in float32 and float64, so every caller sees the same gains


def fixed_gains(sigma: float) -> AEConfig:
    """A law that never moves its gains (α0, μ0, σ0): factors 1, no momentum nudges."""
    return AEConfig(
        update_rule="adam",
        up=1.0,
        down=1.0,
        var_damping=0.0,
        momentum0=MU,
        momentum_step=0.0,
        momentum_decay=0.0,
        sigma0=sigma,
        sigma_min=sigma,
        sigma_max=sigma,
        sigma_var_damping=0.0,
        n_probes=0,
    )


def run_optimizer(theta0, grads, etas, sigma):
    """One AEOptimizer per row; the loss ``θ·g − (θ·g).detach() + 1`` has gradient g."""
    out = []
    for b in range(B):
        theta = theta0[b].clone().requires_grad_(True)
        opt = AEOptimizer([theta], lr=ALPHA, config=fixed_gains(sigma), bounds=(0.0, 1.0))
        draws = iter(eta[b] for eta in etas)
        opt._noise = lambda p, draws=draws: next(draws)
        for g in grads:

            def closure(g=g[b], theta=theta, opt=opt):
                opt.zero_grad()
                dot = (theta * g).sum()
                loss = dot - dot.detach() + 1.0
                loss.backward()
                return loss

            opt.step(closure)
        out.append(theta.detach())
    return torch.stack(out)


def run_scheduler(theta0, grads, etas, sigma):
    env = gym.make("AEGym/SchedulerGains-v1", duration_s=0.25)
    single = env.unwrapped.core
    core = type(single)(single.config, single.targets, B)
    core.knobs[:, core.free_idx] = theta0
    core.gains = Gains(ones(B) * ALPHA, ones(B) * MU, ones(B) * sigma)
    g_now = {}

    def render_distance(free, rows=None):
        dot = (free * g_now["g"]).sum(-1)
        return dot - dot.detach() + 1.0, None, None

    core.render_distance = render_distance
    for g, eta in zip(grads, etas, strict=True):
        g_now["g"] = g
        core._inner_step(eta)
    return core.knobs[:, core.free_idx].clone()


def run_policy(theta0, grads, etas, sigma):
    core = SimpleNamespace(
        batch=B,
        n_free=F,
        config=SimpleNamespace(max_move=1.0),
        knobs=theta0.clone(),
        free_idx=torch.arange(F),
    )
    step = iter(grads)
    core.loss_and_grad = lambda: (ones(B), next(step))
    policy = AEGradientPolicy(core, alpha0=ALPHA, config=fixed_gains(sigma))
    draws = iter(etas)
    policy._noise = lambda theta: next(draws)
    for _ in grads:
        action = policy(np.zeros((B, 1)), None)
        core.knobs = core.knobs + torch.from_numpy(action) * core.config.max_move
    return core.knobs


@pytest.mark.usefixtures("one_thread")
@pytest.mark.parametrize("sigma", [0.0, 2.0**-7])
def test_optimizer_scheduler_and_policy_make_the_same_update(sigma: float) -> None:
    gen = torch.Generator().manual_seed(3)
    theta0 = 0.3 + 0.4 * torch.rand(B, F, generator=gen)
    grads = [torch.randn(B, F, generator=gen) for _ in range(STEPS)]
    etas = [torch.randn(B, F, generator=gen) for _ in range(STEPS)]
    results = {
        "optimizer": run_optimizer(theta0, grads, etas, sigma),
        "scheduler": run_scheduler(theta0, grads, etas, sigma),
        "policy": run_policy(theta0, grads, etas, sigma),
    }
    assert not torch.equal(results["optimizer"], theta0)  # it did move
    assert bool(((results["optimizer"] > 0) & (results["optimizer"] < 1)).all())  # no clamp
    for name, theta in results.items():
        assert torch.equal(theta, results["optimizer"]), name
