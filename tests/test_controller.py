"""Tests of the AE controller: the law, the optimizer and sound matching."""

from __future__ import annotations

import copy
import io
import json
import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from aegym.controller import (
    AEConfig,
    AEController,
    AEOptimizer,
    AESignals,
    AEStepLog,
    alpha_factor,
    cosine_envelope,
    ema,
    fit_patch,
    next_alpha,
    next_momentum,
    next_plateau_count,
    next_sigma,
    success_factor,
    window_variance,
)

CFG = AEConfig()


def pinned(sigma: float = 0.0, **kwargs) -> AEConfig:
    """Config with σ held at ``sigma`` (min = max = σ0)."""
    return AEConfig(sigma0=sigma, sigma_min=sigma, sigma_max=sigma, **kwargs)


def quadratic_closure(opt: AEOptimizer, theta: torch.Tensor, center: torch.Tensor):
    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (theta - center).pow(2).sum()
        loss.backward()
        return loss

    return closure


def same(a: tuple, b: tuple) -> bool:
    """Field-wise equality of log tuples, NaN equal to NaN."""
    return all(
        (isinstance(x, float) and isinstance(y, float) and math.isnan(x) and math.isnan(y))
        or x == y
        for x, y in zip(a, b, strict=True)
    )


# ---------------------------------------------------------------- config


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("beta", 1.0),
        ("beta", -0.1),
        ("var_window", 1),
        ("eps", -1e-4),
        ("up", 0.99),
        ("down", 0.0),
        ("down", 1.5),
        ("var_damping", 101.0),
        ("var_damping", -1.0),
        ("alpha_min_factor", 0.0),
        ("alpha_min_factor", 1.2),
        ("alpha_max_factor", 0.9),
        ("momentum_max", 1.0),
        ("momentum0", 0.995),
        ("momentum_step", -0.1),
        ("momentum_decay", 1.5),
        ("sigma_min", -1e-6),
        ("sigma_max", 2.0),
        ("sigma0", 0.5),
        ("sigma0", 1e-7),
        ("plateau_steps", 0),
        ("plateau_boost", 0.5),
        ("sigma_decay", 0.0),
        ("test_every", 0),
        ("n_probes", -1),
        ("rho", 1.5),
        ("success_beta", 1.0),
        ("divergence_factor", 1.0),
        ("rollback_alpha_cut", 0.0),
        ("update_rule", "rmsprop"),
        ("adam_beta2", 1.0),
        ("adam_eps", 0.0),
        ("seed", -1),
        ("eps", math.nan),
        ("total_steps", 0),
    ],
)
def test_config_rejects_bad_values_naming_field_and_value(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field) as info:
        AEConfig(**{field: value})
    assert repr(value) in str(info.value)


def test_config_rejects_wrong_types_and_cosine_without_length() -> None:
    with pytest.raises(TypeError, match="beta"):
        AEConfig(beta="0.9")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="var_window"):
        AEConfig(var_window=10.0)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="total_steps"):
        AEConfig(cosine_envelope=True)


def test_config_round_trips_through_json() -> None:
    cfg = AEConfig(update_rule="adam", cosine_envelope=True, total_steps=50, seed=3)
    assert AEConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="unknown"):
        AEConfig.from_dict({"nope": 1})


# ---------------------------------------------------------------- pure law


def test_ema_and_window_variance_values() -> None:
    assert ema(None, 3.0, 0.9) == 3.0
    assert ema(2.0, 4.0, 0.75) == 0.75 * 2.0 + 0.25 * 4.0
    assert window_variance([]) == 0.0
    assert window_variance([5.0]) == 0.0
    assert window_variance([1.0, 3.0]) == 1.0
    assert window_variance([2.0, 4.0, 4.0, 4.0, 5.0, 5.0, 7.0, 9.0]) == 4.0


def test_alpha_law_branches_are_exact() -> None:
    assert alpha_factor(1e-3, 0.7, CFG) == 1.02
    assert next_alpha(0.01, alpha_factor(1e-3, 0.0, CFG), 0.01, CFG) == 0.01 * 1.02
    v = 0.05
    assert alpha_factor(0.0, v, CFG) == 0.8 / (1.0 + 5.0 * v)
    assert next_alpha(0.01, alpha_factor(-1.0, v, CFG), 0.01, CFG) == 0.01 * (0.8 / (1 + 5 * v))
    # Δℓ == ε is not an improvement.
    assert alpha_factor(CFG.eps, 0.0, CFG) == 0.8


def test_alpha_is_clipped_to_its_window() -> None:
    assert next_alpha(2.9, 1.5, 1.0, CFG) == 3.0
    assert next_alpha(0.31, 0.5, 1.0, CFG) == 0.3
    assert next_alpha(1.0, math.nan, 1.0, CFG) == 0.3


def test_cosine_envelope_moves_the_alpha_window() -> None:
    cfg = AEConfig(cosine_envelope=True, total_steps=100, cosine_floor=0.1)
    assert cosine_envelope(0, cfg) == 1.0
    assert cosine_envelope(100, cfg) == pytest.approx(0.1)
    assert cosine_envelope(500, cfg) == pytest.approx(0.1)
    assert cosine_envelope(50, cfg) == pytest.approx(0.55)
    assert cosine_envelope(50, CFG) == 1.0
    assert next_alpha(3.0, 1.0, 1.0, cfg, step=50) == pytest.approx(3.0 * 0.55)
    assert next_alpha(0.01, 1.0, 1.0, cfg, step=100) == pytest.approx(0.3 * 0.1)


def test_momentum_law_branches_are_exact() -> None:
    assert next_momentum(0.5, 0.1, CFG) == 0.5 + 0.02
    assert next_momentum(0.5, 0.0, CFG) == 0.5 - 0.1 * 0.5
    assert next_momentum(0.5, -3.0, CFG) == 0.5 - 0.1 * 0.5
    assert next_momentum(0.945, 1.0, CFG) == CFG.momentum_max == 0.95
    assert next_momentum(0.0, -1.0, CFG) == 0.0


def test_plateau_counter() -> None:
    assert next_plateau_count(3, 0.0, CFG) == 4
    assert next_plateau_count(3, -CFG.plateau_tol, CFG) == 4
    assert next_plateau_count(3, 2 * CFG.plateau_tol, CFG) == 0


def test_sigma_law_branches_are_exact() -> None:
    s0 = CFG.sigma0
    # Raised only on plateaus (count >= p).
    assert next_sigma(s0, CFG.plateau_steps, 0.0, None, CFG) == s0 * 1.5
    assert next_sigma(s0, CFG.plateau_steps - 1, 0.0, None, CFG) == s0
    # Variance cut.
    assert next_sigma(s0, 0, 0.2, None, CFG) == s0 / (1.0 + 5.0 * 0.2)
    # Success feedback: a low rate cuts, a high rate boosts only on plateaus.
    assert success_factor(None, CFG) == 1.0
    assert success_factor(0.2, CFG) == 1.0
    assert next_sigma(s0, 0, 0.0, 0.0, CFG) == s0 * math.exp(-0.2)
    assert next_sigma(s0, 0, 0.0, 1.0, CFG) == s0
    assert next_sigma(s0, 5, 0.0, 1.0, CFG) == s0 * 1.5 * math.exp(0.8)
    # Off plateaus a raised σ relaxes back toward σ0, never below it by that term.
    assert next_sigma(4 * s0, 0, 0.0, None, CFG) == 4 * s0 * 0.9
    assert next_sigma(1.05 * s0, 0, 0.0, None, CFG) == s0
    # Bounds.
    assert next_sigma(CFG.sigma_max, 9, 0.0, 1.0, CFG) == CFG.sigma_max
    assert next_sigma(CFG.sigma_min, 0, 1e9, 0.0, CFG) == CFG.sigma_min


@settings(deadline=None)
@given(
    sigma=st.floats(1e-6, 1e-1),
    count=st.integers(0, 4),
    variance=st.one_of(st.floats(0, 1e12), st.just(math.inf), st.just(math.nan)),
    success=st.one_of(st.none(), st.floats(0.0, 1.0)),
)
def test_sigma_never_rises_off_plateau(
    sigma: float, count: int, variance: float, success: float | None
) -> None:
    assert next_sigma(sigma, count, variance, success, CFG) <= sigma


# ---------------------------------------------------------------- controller

finite_losses = st.one_of(
    st.floats(-1e6, 1e6, allow_nan=False),
    st.sampled_from([0.0, 1e-300, -1e-300, 1e300, -1e300, 1e-12, 1.0, 10.0]),
)


@settings(max_examples=60, deadline=None)
@given(
    losses=st.lists(finite_losses, min_size=1, max_size=60),
    rewards=st.lists(st.one_of(st.none(), finite_losses), min_size=60, max_size=60),
    alpha0=st.floats(1e-6, 10.0),
    cosine=st.booleans(),
    relative=st.booleans(),
    success=st.lists(st.floats(0.0, 1.0), min_size=60, max_size=60),
)
def test_gains_stay_bounded_under_adversarial_signals(
    losses: list[float],
    rewards: list[float | None],
    alpha0: float,
    cosine: bool,
    relative: bool,
    success: list[float],
) -> None:
    cfg = AEConfig(cosine_envelope=cosine, total_steps=20, relative=relative)
    ctl = AEController(alpha0, cfg)
    for i, loss in enumerate(losses):
        if i % 7 == 3:
            ctl.record_local_test(success[i])
        if i % 11 == 5:
            ctl.cut_alpha()
        s = ctl.observe(loss, rewards[i])
        # The window is [0.3, 3]·α0, scaled by the cosine envelope e(t) <= 1 when on.
        env = cosine_envelope(s.step - 1, cfg) if s.step > 1 else 1.0
        assert 0.3 * alpha0 * env * (1 - 1e-12) <= s.alpha <= 3.0 * alpha0 * (1 + 1e-12)
        assert s.alpha <= 3.0 * alpha0 * env * (1 + 1e-12)
        assert 0.0 <= s.momentum <= cfg.momentum_max
        assert cfg.sigma_min <= s.sigma <= cfg.sigma_max


def test_alternating_losses_damp_alpha_to_its_floor_and_no_lower() -> None:
    ctl = AEController(0.1)
    alphas = [ctl.observe(1.0 if i % 2 else 10.0).alpha for i in range(200)]
    assert min(alphas) == 0.3 * 0.1
    # The EMA dips on every low sample (an "improvement": ×u), the next high sample
    # damps it straight back to the floor.
    assert max(alphas[100:]) <= 0.3 * 0.1 * 1.02 * (1 + 1e-12)


def test_controller_first_step_initializes_then_law_applies() -> None:
    ctl = AEController(0.1)
    s = ctl.observe(1.0)
    assert (s.alpha, s.momentum, s.sigma) == (0.1, 0.9, CFG.sigma0)
    assert s.loss_ema == 1.0 and s.delta_loss == 0.0
    s = ctl.observe(0.5)  # ℓ̄ 1 -> 0.95: relative Δℓ = 0.05 > ε, reward −ℓ rises
    assert s.loss_ema == pytest.approx(0.95)
    assert s.delta_loss == pytest.approx(0.05)
    assert s.alpha == 0.1 * 1.02
    assert s.momentum == 0.9 + 0.02
    assert s.lyapunov == -0.5
    s = ctl.observe(1.0, reward=-5.0)  # worse and reward down
    assert s.delta_loss < 0 and s.variance == pytest.approx((1 / 18) / 0.95**2)
    assert s.alpha == 0.1 * 1.02 * (0.8 / (1 + 5.0 * s.variance))
    assert s.momentum == pytest.approx(0.92 * 0.9)
    assert ctl.gains == (s.alpha, s.momentum, s.sigma)
    assert isinstance(s, AESignals)


def test_controller_raw_signals_when_not_relative() -> None:
    cfg = AEConfig(relative=False)
    ctl = AEController(1.0, cfg)
    ctl.observe(10.0)
    s = ctl.observe(10.5)
    assert s.delta_loss == pytest.approx(-0.05)
    assert s.variance == 0.0625
    assert s.alpha == 0.8 / (1 + 5.0 * 0.0625)


def test_controller_boosts_sigma_only_after_p_flat_steps() -> None:
    ctl = AEController(0.1)
    sigmas = [ctl.observe(1.0).sigma for _ in range(8)]
    s0 = CFG.sigma0
    assert sigmas[:5] == [s0] * 5
    assert sigmas[5] == s0 * 1.5
    assert sigmas[6] == s0 * 1.5 * 1.5


def test_controller_rejects_non_finite_inputs() -> None:
    ctl = AEController(0.1)
    for bad in (math.nan, math.inf, -math.inf):
        with pytest.raises(ValueError, match="loss"):
            ctl.observe(bad)
        with pytest.raises(ValueError, match="reward"):
            ctl.observe(1.0, reward=bad)
    assert ctl.step == 0
    with pytest.raises(ValueError, match="alpha0"):
        AEController(0.0)
    with pytest.raises(ValueError, match="success_fraction"):
        ctl.record_local_test(1.5)


def test_controller_state_dict_is_json_and_continues_identically() -> None:
    gen = torch.Generator().manual_seed(0)
    losses = (torch.rand(40, generator=gen) * 3).tolist()
    a = AEController(0.05)
    for x in losses[:20]:
        a.observe(x)
    a.record_local_test(0.5)
    json.dumps(AEController(0.05).state_dict(), allow_nan=False)
    state = json.loads(json.dumps(a.state_dict(), allow_nan=False))
    b = AEController(0.05)
    b.load_state_dict(state)
    for x in losses[20:]:
        assert a.observe(x) == b.observe(x)
    with pytest.raises(ValueError, match="missing"):
        b.load_state_dict({"alpha": 1.0})


# ---------------------------------------------------------------- optimizer


def test_sigma_zero_update_equals_plain_momentum_sgd() -> None:
    theta = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64, requires_grad=True)
    center = torch.tensor([0.5, 0.5, 0.5], dtype=torch.float64)
    opt = AEOptimizer([theta], lr=0.05, config=pinned(0.0, n_probes=0))
    closure = quadratic_closure(opt, theta, center)
    ref, h = theta.detach().clone(), torch.zeros(3, dtype=torch.float64)
    for _ in range(15):
        opt.step(closure)
        log = opt.last_log
        g = 2 * (ref - center)
        h = log.momentum * h + (1 - log.momentum) * g
        ref = ref - log.alpha * h
        assert torch.allclose(theta.detach(), ref, rtol=0, atol=1e-14)
        assert log.dither_norm == 0.0


def test_adam_rule_first_step_is_sign_sized() -> None:
    theta = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    opt = AEOptimizer([theta], lr=0.01, config=pinned(0.0, n_probes=0, update_rule="adam"))
    opt.step(quadratic_closure(opt, theta, torch.zeros(2, dtype=torch.float64)))
    assert torch.allclose(theta.detach(), torch.tensor([0.99, -1.99], dtype=torch.float64))


def test_dither_goes_into_theta_not_the_gradient() -> None:
    torch.manual_seed(0)
    theta = (3.0 * torch.randn(20_000, dtype=torch.float64)).requires_grad_()
    center = torch.zeros_like(theta)
    sigma = 0.01
    # lr large enough that the step (RMS 2·(1 − μ)·lr·RMS(θ) = 0.2·RMS(θ)) exceeds σ·D(θ):
    # the step-size cap of the dither does not bind here.
    opt = AEOptimizer([theta], lr=1.0, config=pinned(sigma, n_probes=0))
    closure = quadratic_closure(opt, theta, center)
    before = theta.detach().clone()
    gen = torch.Generator().manual_seed(0)
    gen.set_state(opt.generator("cpu").get_state())
    opt.step(closure)
    # The gradient is untouched: exactly ∇ℓ(θ_t).
    assert torch.equal(theta.grad, 2 * before)
    # θ moved by −u + σ·D(θ_t)·η with D the per-tensor RMS and η from the seeded generator.
    eta = torch.randn(theta.shape, generator=gen).double()
    rms = before.pow(2).mean().sqrt()
    update = opt.last_log.alpha * (1 - opt.last_log.momentum) * 2 * before
    expected = before + (sigma * rms * eta - update)
    assert torch.allclose(theta.detach(), expected, rtol=0, atol=1e-12)
    dithered = (theta.detach() - before + update).pow(2).mean().sqrt()
    assert dithered / (sigma * rms) == pytest.approx(1.0, rel=0.03)
    assert opt.last_log.dither_norm == pytest.approx(float(dithered * math.sqrt(20_000)), rel=1e-6)


def test_dither_is_never_larger_than_the_step() -> None:
    # At a tiny lr, σ·D(θ) is 10^10 times the step: the dither is cut to the step's RMS,
    # so a dither boost cannot outrun the descent (the drop-in MLP regression ended above
    # its start loss without this cap).
    torch.manual_seed(0)
    theta = (3.0 * torch.randn(20_000, dtype=torch.float64)).requires_grad_()
    opt = AEOptimizer([theta], lr=1e-12, config=pinned(0.01, n_probes=0))
    before = theta.detach().clone()
    opt.step(quadratic_closure(opt, theta, torch.zeros_like(theta)))
    step_rms = opt.last_log.update_norm / math.sqrt(20_000)
    assert step_rms == pytest.approx(2 * 0.1 * 1e-12 * float(before.pow(2).mean().sqrt()))
    assert opt.last_log.dither_norm / math.sqrt(20_000) == pytest.approx(step_rms, rel=0.03)


def test_dither_floor_moves_zero_initialized_params() -> None:
    theta = torch.zeros(1000, requires_grad=True)
    # A step (RMS 0.2) larger than σ·floor = 1e-3, so the step-size cap does not bind.
    opt = AEOptimizer([theta], lr=1.0, config=pinned(0.1, n_probes=0, dither_floor=0.01))
    opt.step(quadratic_closure(opt, theta, torch.ones(1000)))
    assert opt.last_log.dither_norm / math.sqrt(1000) == pytest.approx(1e-3, rel=0.1)


def test_local_test_averages_in_exactly_rho() -> None:
    theta = torch.tensor([1.0, -2.0, 3.0], dtype=torch.float64, requires_grad=True)
    center = torch.zeros(3, dtype=torch.float64)
    seen: list[list[list[torch.Tensor]]] = []

    def batched_eval(candidates: list[list[torch.Tensor]]) -> torch.Tensor:
        seen.append([[c.clone() for c in cand] for cand in candidates])
        return torch.tensor([99.0, 99.0, -1.0, math.nan])  # probe 2 wins, NaN loses

    cfg = pinned(0.0, test_every=1, n_probes=4, rho=0.2, probe_scale=0.1)
    opt = AEOptimizer([theta], lr=0.05, config=cfg, batched_eval=batched_eval)
    before = theta.detach().clone()
    gen = torch.Generator().manual_seed(0)
    gen.set_state(opt.generator("cpu").get_state())
    opt.step(quadratic_closure(opt, theta, center))
    log = opt.last_log
    assert log.probes == 4 and log.averaged_in and log.probe_best_loss == -1.0
    # Probes are θ_t + probe_scale·D(θ_t)·η_i.
    rms = before.pow(2).mean().sqrt()
    for cand in seen[0]:
        eta = torch.randn(3, generator=gen).double()
        assert torch.allclose(cand[0], before + 0.1 * rms * eta, rtol=0, atol=1e-15)
    after_step = before - log.alpha * (1 - log.momentum) * 2 * before
    expected = (1 - 0.2) * after_step + 0.2 * seen[0][2][0]
    assert torch.allclose(theta.detach(), expected, rtol=0, atol=1e-15)
    # Success fraction 1/4 fed to the success-rate EMA (0.8·0.2 + 0.2·0.25).
    assert opt.controller.success_rate == pytest.approx(0.8 * 0.2 + 0.2 * 0.25)


def test_local_test_without_winner_changes_nothing_and_loop_fallback_restores_grads() -> None:
    # θ_t sits at the minimum: every probe is worse and the gradient is zero.
    center = torch.tensor([1.0, -1.0], dtype=torch.float64)
    theta = center.clone().requires_grad_()
    calls = []
    opt = AEOptimizer([theta], lr=0.1, config=pinned(0.0, test_every=1, n_probes=3))
    inner = quadratic_closure(opt, theta, center)

    def closure() -> torch.Tensor:
        calls.append(theta.detach().clone())
        return inner()

    opt.step(closure)
    assert len(calls) == 4  # the step's evaluation + 3 probes, one by one
    assert all(not torch.equal(c, center) for c in calls[1:])
    assert torch.equal(theta.grad, torch.zeros(2, dtype=torch.float64))  # restored
    log = opt.last_log
    assert log.probes == 3 and not log.averaged_in and log.probe_best_loss > 0
    assert torch.equal(theta.detach(), center)
    assert opt.controller.success_rate == pytest.approx(0.8 * 0.2)


def test_rollback_on_nan_restores_params_state_and_cuts_alpha() -> None:
    theta = torch.tensor([2.0, -1.0], requires_grad=True)
    center = torch.zeros(2)
    opt = AEOptimizer([theta], lr=0.05, config=AEConfig(n_probes=0))
    good = quadratic_closure(opt, theta, center)
    params, states = [], []
    for _ in range(3):
        params.append(theta.detach().clone())
        states.append(copy.deepcopy(opt.state[theta]))
        opt.step(good)
    alpha_before = opt.controller.alpha
    ctl_step, loss_ema = opt.controller.step, opt.controller.loss_ema

    def bad() -> torch.Tensor:
        opt.zero_grad()
        loss = theta.sum() * math.nan
        loss.backward()
        return loss

    opt.step(bad)
    log = opt.last_log
    assert log.diverged and log.rolled_back and log.divergences == 1
    assert torch.equal(theta.detach(), params[2])  # last θ whose loss was good
    assert torch.equal(opt.state[theta]["h"], states[2]["h"])
    assert opt.controller.alpha == alpha_before * 0.5 == log.alpha
    assert opt.controller.step == ctl_step and opt.controller.loss_ema == loss_ema
    assert all(math.isfinite(v) for v in opt.controller.state_dict()["history"])
    opt.step(good)  # recovers
    assert not opt.last_log.diverged and math.isfinite(opt.last_log.loss)


def test_loss_spike_counts_as_divergence() -> None:
    theta = torch.tensor([1.0], requires_grad=True)
    opt = AEOptimizer([theta], lr=0.01, config=AEConfig(n_probes=0, divergence_factor=10.0))
    scale = [1.0]

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = scale[0] * theta.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    opt.step(closure)
    scale[0] = 1000.0
    opt.step(closure)
    assert opt.last_log.diverged and opt.divergences == 1


def test_bounds_hold_after_every_step() -> None:
    theta = torch.tensor([0.5, 0.5, 0.99], requires_grad=True)
    center = torch.tensor([-3.0, 0.5, 5.0])
    opt = AEOptimizer(
        [theta], lr=0.5, config=AEConfig(sigma0=0.05, test_every=2), bounds=(0.0, 1.0)
    )
    closure = quadratic_closure(opt, theta, center)
    for _ in range(20):
        opt.step(closure)
        assert float(theta.detach().min()) >= 0.0 and float(theta.detach().max()) <= 1.0
    calls = []
    opt2 = AEOptimizer(
        [theta], lr=0.5, bounds=lambda t: calls.append(1) or t.clamp(0.2, 0.8), config=AEConfig()
    )
    opt2.step(quadratic_closure(opt2, theta, center))
    low, high = torch.tensor([0.2, 0.8])
    assert calls and theta.detach().min() >= low and theta.detach().max() <= high


def test_step_needs_a_loss_and_accepts_one_without_closure() -> None:
    theta = torch.tensor([1.0], requires_grad=True)
    opt = AEOptimizer([theta], lr=0.1)
    with pytest.raises(ValueError, match="closure"):
        opt.step()
    loss = theta.pow(2).sum()
    loss.backward()
    assert opt.step(loss=loss, reward=0.5) is loss
    assert opt.last_log.reward == 0.5
    with pytest.raises(ValueError, match="lr"):
        AEOptimizer([theta], lr=-1.0)


def test_resonance_monitors_see_ringing_and_coherent_updates() -> None:
    cfg = pinned(0.0, n_probes=0, momentum0=0.0, momentum_max=0.0, relative=False, up=1.0)
    for lr, ringing in ((0.95, True), (0.01, False)):
        theta = torch.ones(8, dtype=torch.float64, requires_grad=True)
        opt = AEOptimizer([theta], lr=lr, config=cfg)
        closure = quadratic_closure(opt, theta, torch.zeros(8, dtype=torch.float64))
        for _ in range(30):
            opt.step(closure)
        log = opt.last_log
        assert -1.0 <= log.update_autocorr <= 1.0 and 0.0 <= log.flip_rate <= 1.0
        if ringing:
            assert log.update_autocorr < -0.9 and log.flip_rate > 0.9
        else:
            assert log.update_autocorr > 0.9 and log.flip_rate < 0.1
            assert log.lyapunov < 0


def _regression(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(128, 6, generator=gen)
    w = torch.randn(6, 1, generator=gen)
    y = x @ w + 0.01 * torch.randn(128, 1, generator=gen)
    torch.manual_seed(seed)
    model = torch.nn.Linear(6, 1)
    return x, y, model


def _train(opt: AEOptimizer, model: torch.nn.Module, x, y, steps: int) -> list[AEStepLog]:
    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = (model(x) - y).pow(2).mean()
        loss.backward()
        return loss

    logs = []
    for _ in range(steps):
        opt.step(closure)
        logs.append(opt.last_log)
    return logs


@pytest.mark.parametrize(("rule", "lr"), [("sgd", 0.1), ("adam", 0.05)])
def test_optimizer_drives_regression_loss_down(rule: str, lr: float) -> None:
    x, y, model = _regression()
    opt = AEOptimizer(model.parameters(), lr=lr, config=AEConfig(update_rule=rule))
    logs = _train(opt, model, x, y, 150)
    start = logs[0].loss
    with torch.no_grad():
        final = float((model(x) - y).pow(2).mean())
    assert final < 0.02 * start
    for log in logs:
        for name, value in log._asdict().items():
            if name not in ("probe_best_loss",):
                assert math.isfinite(value), name


def test_seeded_runs_are_identical_and_seeds_differ() -> None:
    results = []
    for seed in (5, 5, 6):
        x, y, model = _regression()
        opt = AEOptimizer(model.parameters(), lr=0.1, config=AEConfig(seed=seed, test_every=3))
        _train(opt, model, x, y, 12)
        results.append(torch.cat([p.detach().flatten() for p in model.parameters()]))
    assert torch.equal(results[0], results[1])
    assert not torch.equal(results[0], results[2])


def test_state_dict_round_trip_continues_identically() -> None:
    cfg = AEConfig(sigma0=0.01, test_every=3, n_probes=2)
    x, y, model = _regression()
    opt = AEOptimizer(model.parameters(), lr=0.1, config=cfg)
    _train(opt, model, x, y, 7)
    buf = io.BytesIO()
    torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, buf)
    json.dumps(opt.state_dict()["ae"]["controller"])
    json.dumps(opt.state_dict()["ae"]["generators"])
    logs_a = _train(opt, model, x, y, 8)
    params_a = [p.detach().clone() for p in model.parameters()]

    buf.seek(0)
    saved = torch.load(buf, weights_only=False)
    _, _, model_b = _regression(seed=1)
    model_b.load_state_dict(saved["model"])
    opt_b = AEOptimizer(model_b.parameters(), lr=0.1, config=cfg)
    opt_b.load_state_dict(saved["opt"])
    logs_b = _train(opt_b, model_b, x, y, 8)
    assert all(same(a, b) for a, b in zip(logs_a, logs_b, strict=True))
    for pa, pb in zip(params_a, model_b.parameters(), strict=True):
        assert torch.equal(pa, pb.detach())
    with pytest.raises(ValueError, match="ae"):
        opt_b.load_state_dict({"state": {}, "param_groups": []})


def test_param_groups_scale_with_one_law() -> None:
    a = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    b = torch.tensor([1.0], dtype=torch.float64, requires_grad=True)
    opt = AEOptimizer([{"params": [a]}, {"params": [b], "lr": 0.2}], lr=0.1, config=pinned())

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = a.pow(2).sum() + b.pow(2).sum()
        loss.backward()
        return loss

    opt.step(closure)
    step_a, step_b = 1 - float(a.detach()), 1 - float(b.detach())
    assert step_b == pytest.approx(2 * step_a)


# ---------------------------------------------------------------- sound matching


def test_fit_patch_lowers_the_loss_on_in_domain_targets() -> None:
    from aegym.synth import SynthConfig, Voice

    voice = Voice(SynthConfig(sample_rate=16_000, duration_s=0.25))
    space = voice.knob_space
    free = ["cutoff_hz", "osc_mix"]
    idx = space.indices(free)
    target_unit = space.default_unit(2)
    target_unit[0, idx] = torch.tensor([0.35, 0.8])
    target_unit[1, idx] = torch.tensor([0.8, 0.2])
    with torch.no_grad():
        target = voice(target_unit)
    batches: list[int] = []
    voice.register_forward_pre_hook(lambda _m, args: batches.append(args[0].shape[0]))

    cfg = AEConfig(update_rule="adam", test_every=4, n_probes=3)
    result = fit_patch(target, voice, steps=12, lr=0.05, free_knobs=free, config=cfg)

    assert result.item_losses.shape == (12, 2) and len(result.log) == 12
    assert torch.all(result.best_loss < 0.6 * result.initial_loss)
    # Fixed knobs keep their starting values; free ones stay in [0, 1].
    fixed = [i for i in range(len(space)) if i not in idx]
    assert torch.equal(result.unit[:, fixed], space.default_unit(2)[:, fixed])
    assert float(result.unit.min()) >= 0.0 and float(result.unit.max()) <= 1.0
    assert result.physical.shape == (2, len(space))
    assert result.patches()[0]["cutoff_hz"] == pytest.approx(float(result.physical[0, idx[0]]))
    # Probes of both targets were rendered in ONE batched call per local test.
    assert batches.count(3 * 2) == 3
    assert sum(log.probes for log in result.log) == 9


def test_fit_patch_rejects_bad_inputs() -> None:
    from aegym.synth import SynthConfig, Voice

    voice = Voice(SynthConfig(sample_rate=16_000, duration_s=0.25))
    with pytest.raises(ValueError, match="samples"):
        fit_patch(torch.zeros(1, 100), voice, steps=1)
    with pytest.raises(ValueError, match="unknown knob"):
        fit_patch(torch.zeros(4000), voice, steps=1, free_knobs=["nope"])
    with pytest.raises(ValueError, match="steps"):
        fit_patch(torch.zeros(4000), voice, steps=0)


def test_resumed_run_rolls_back_to_the_saved_snapshot() -> None:
    def run(opt: AEOptimizer, theta: torch.Tensor) -> torch.Tensor:
        def bad() -> torch.Tensor:
            opt.zero_grad()
            loss = theta.sum() * math.inf
            loss.backward()
            return loss

        opt.step(bad)
        return theta.detach().clone()

    theta = torch.tensor([2.0, -1.0], requires_grad=True)
    opt = AEOptimizer([theta], lr=0.05, config=AEConfig(n_probes=0))
    closure = quadratic_closure(opt, theta, torch.zeros(2))
    for _ in range(3):
        opt.step(closure)
    saved, params = opt.state_dict(), theta.detach().clone()
    expected = run(opt, theta)

    theta_b = params.clone().requires_grad_()
    opt_b = AEOptimizer([theta_b], lr=0.05, config=AEConfig(n_probes=0))
    opt_b.load_state_dict(saved)
    assert torch.equal(run(opt_b, theta_b), expected)
    assert opt_b.last_log.rolled_back and opt_b.controller.alpha == opt.controller.alpha


def test_frozen_parameters_stay_bit_exact_through_average_in_and_bounds() -> None:
    theta = torch.tensor([0.3, 0.6, 0.1], requires_grad=True)
    # A frozen parameter outside the bounds and with values whose (1-ρ)x + ρx rounds off.
    frozen = torch.tensor([0.1, 1.7, -0.3, 0.7], requires_grad=False)
    before = frozen.clone()

    def batched_eval(candidates: list[list[torch.Tensor]]) -> torch.Tensor:
        return torch.tensor([-1.0] + [9.0] * (len(candidates) - 1))  # probe 0 always wins

    cfg = AEConfig(test_every=1, n_probes=3, rho=0.3)
    opt = AEOptimizer(
        [theta, frozen], lr=0.05, config=cfg, bounds=(0.0, 1.0), batched_eval=batched_eval
    )
    averaged = 0
    for _ in range(8):
        opt.step(quadratic_closure(opt, theta, torch.full((3,), 0.5)))
        averaged += opt.last_log.averaged_in
    assert averaged == 8
    assert torch.equal(frozen, before)


def test_sparse_gradients_with_adam_get_a_clear_error() -> None:
    emb = torch.nn.Embedding(10, 3, sparse=True)

    def closure_for(opt: AEOptimizer):
        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = emb(torch.tensor([1, 2])).pow(2).sum()
            loss.backward()
            return loss

        return closure

    adam = AEOptimizer(emb.parameters(), lr=0.01, config=AEConfig(update_rule="adam"))
    with pytest.raises(ValueError, match=r"update_rule='adam'.*sparse.*update_rule='sgd'"):
        adam.step(closure_for(adam))
    sgd = AEOptimizer(emb.parameters(), lr=0.01, config=AEConfig(update_rule="sgd"))
    loss = float(sgd.step(closure_for(sgd)).detach())
    assert float(closure_for(sgd)().detach()) < loss
