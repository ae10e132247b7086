"""The batched AE law: rows are independent, equal to the scalar law, sync-free."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.profiler import ProfilerActivity, profile

from aegym.control import law
from aegym.control.config import AEConfig
from aegym.control.controller import AEController, next_sigma, window_variance

CFG = AEConfig()
SYNC_OPS = {"aten::item", "aten::_local_scalar_dense", "aten::is_nonzero", "aten::nonzero"}


def assert_states_equal(a: law.LawState, b: law.LawState) -> None:
    for name, x, y in zip(law.LawState._fields, a, b, strict=True):
        assert x.dtype == y.dtype, name
        assert torch.equal(x.nan_to_num(7.0), y.nan_to_num(7.0)), name
        assert torch.equal(x.isnan(), y.isnan()), name


def row(state: law.LawState, i: int) -> law.LawState:
    return law.LawState(*(x[i : i + 1] for x in state))


# One event of a controller's life: ("observe", loss, reward|None, in mask), a local
# test result, an α cut or a resonance update.
events = st.lists(
    st.one_of(
        st.tuples(
            st.just("observe"),
            st.floats(1e-3, 1e3),
            st.one_of(st.none(), st.floats(-10.0, 10.0)),
            st.booleans(),
        ),
        st.tuples(st.just("test"), st.floats(0.0, 1.0)),
        st.tuples(st.just("cut"), st.floats(0.1, 1.0)),
        st.tuples(st.just("update"), st.floats(0.0, 10.0), st.floats(-1.0, 1.0)),
    ),
    min_size=1,
    max_size=40,
)


@settings(max_examples=40, deadline=None)
@given(
    rows=st.lists(events, min_size=2, max_size=4),
    relative=st.booleans(),
    cosine=st.booleans(),
)
def test_batched_law_equals_each_row_run_alone(
    rows: list[list[tuple]], relative: bool, cosine: bool
) -> None:
    """B controllers stepped together equal B one-row controllers, bit for bit (float64)."""
    cfg = AEConfig(relative=relative, cosine_envelope=cosine, total_steps=15, var_window=4)
    b, length = len(rows), max(len(r) for r in rows)
    alpha0 = torch.linspace(0.01, 0.5, b, dtype=torch.float64)
    batch = law.init_state(b, alpha0, cfg)
    alone = [law.init_state(1, alpha0[i : i + 1], cfg) for i in range(b)]
    for t in range(length):
        # At time t every row does the same kind of event (rows without one sit it out).
        kind = next(r[t][0] for r in rows if t < len(r))
        active = torch.tensor([t < len(r) and r[t][0] == kind for r in rows])
        cells = [r[t] if t < len(r) and r[t][0] == kind else None for r in rows]
        if kind == "observe":
            mask = active & torch.tensor([c is not None and c[3] for c in cells])
            loss = torch.tensor([c[1] if c else 1.0 for c in cells], dtype=torch.float64)
            reward = torch.tensor(
                [c[2] if c and c[2] is not None else -(c[1] if c else 1.0) for c in cells],
                dtype=torch.float64,
            )
            batch = law.observe(batch, loss, reward, cfg, mask=mask, grad_norm=loss * 2)
            for i in range(b):
                if mask[i]:
                    alone[i] = law.observe(
                        alone[i],
                        loss[i : i + 1],
                        reward[i : i + 1],
                        cfg,
                        grad_norm=loss[i : i + 1] * 2,
                    )
        elif kind == "test":
            frac = torch.tensor([c[1] if c else 0.0 for c in cells], dtype=torch.float64)
            batch = law.record_local_test(batch, frac, cfg, mask=active)
            for i in range(b):
                if active[i]:
                    alone[i] = law.record_local_test(alone[i], frac[i : i + 1], cfg)
        elif kind == "cut":
            # cut_alpha takes one factor for the batch: use the first active row's.
            factor = next(c[1] for c in cells if c)
            batch = law.cut_alpha(batch, cfg, factor, mask=active)
            for i in range(b):
                if active[i]:
                    alone[i] = law.cut_alpha(alone[i], cfg, factor)
        else:
            norm = torch.tensor([c[1] if c else 0.0 for c in cells], dtype=torch.float64)
            cos = torch.tensor([c[2] if c else math.nan for c in cells], dtype=torch.float64)
            batch = law.observe_update(batch, cfg, norm, cos, cos.abs(), mask=active)
            for i in range(b):
                if active[i]:
                    alone[i] = law.observe_update(
                        alone[i], cfg, norm[i : i + 1], cos[i : i + 1], cos[i : i + 1].abs()
                    )
    for i in range(b):
        assert_states_equal(row(batch, i), alone[i])


def _reference_descending(values: list[float], z: float | None) -> bool:
    """Plain-Python t-test of a descending least-squares slope (None: no test)."""
    n = len(values)
    if z is None or n < 3:
        return False
    xm, ym = (n - 1) / 2, math.fsum(values) / n
    sxx = math.fsum((i - xm) ** 2 for i in range(n))
    slope = math.fsum((i - xm) * (y - ym) for i, y in enumerate(values)) / sxx
    rss = math.fsum((y - ym - slope * (i - xm)) ** 2 for i, y in enumerate(values))
    return -slope > z * math.sqrt(rss / ((n - 2) * sxx))


def _reference_observe(ctl: dict, loss: float, cfg: AEConfig) -> None:
    """The law as plain Python floats (the pre-batching AEController, condensed), with
    reward = −loss and no local tests. An oracle for the tensor law."""
    prev_l, prev_r = ctl["loss_ema"], ctl["reward_ema"]
    ctl["history"] = ([*ctl["history"], loss])[-cfg.var_window :]
    h = ctl["history"]
    mean = math.fsum(h) / len(h)
    raw_var = math.fsum((x - mean) ** 2 for x in h) / len(h) if len(h) > 1 else 0.0
    if ctl["loss"] is not None:
        d = loss - ctl["loss"]
        ctl["lyapunov"] = d if ctl["step"] == 1 else cfg.beta * ctl["lyapunov"] + (1 - cfg.beta) * d
    ctl["loss"] = loss
    if prev_l is None:
        ctl["loss_ema"], ctl["reward_ema"] = loss, -loss
        ctl["variance"] = raw_var
    else:
        ctl["loss_ema"] = cfg.beta * prev_l + (1 - cfg.beta) * loss
        ctl["reward_ema"] = cfg.beta * prev_r + (1 - cfg.beta) * -loss
        scale = max(abs(prev_l), 1e-12)
        delta, var = (prev_l - ctl["loss_ema"]) / scale, raw_var / scale**2
        dr = ctl["reward_ema"] - prev_r
        ctl["variance"], ctl["delta_loss"] = var, delta
        flat = abs(delta) <= cfg.plateau_tol and not _reference_descending(h, cfg.plateau_trend_z)
        ctl["plateau_count"] = ctl["plateau_count"] + 1 if flat else 0
        f = cfg.up if delta > cfg.eps else cfg.down / (1 + cfg.var_damping * var)
        ctl["alpha"] = min(max(ctl["alpha"] * f, 0.3 * ctl["alpha0"]), 3.0 * ctl["alpha0"])
        mu = ctl["momentum"] + cfg.momentum_step if dr > 0 else ctl["momentum"] * 0.9
        ctl["momentum"] = min(max(mu, 0.0), cfg.momentum_max)
        damp = 1 + cfg.sigma_var_damping * var
        if ctl["plateau_count"] >= cfg.plateau_steps:
            sigma = ctl["sigma"] * cfg.plateau_boost / damp
        else:
            sigma = ctl["sigma"] / damp
            sigma = max(cfg.sigma0, sigma * cfg.sigma_decay) if sigma > cfg.sigma0 else sigma
        ctl["sigma"] = min(max(sigma, cfg.sigma_min), cfg.sigma_max)
    ctl["step"] += 1


@settings(max_examples=40, deadline=None)
@given(losses=st.lists(st.floats(0.05, 20.0), min_size=1, max_size=50))
def test_tensor_law_matches_the_plain_python_law(losses: list[float]) -> None:
    ctl = AEController(0.1)
    ref = {
        "alpha0": 0.1, "alpha": 0.1, "momentum": CFG.momentum0, "sigma": CFG.sigma0,
        "step": 0, "loss": None, "loss_ema": None, "reward_ema": None, "delta_loss": 0.0,
        "variance": 0.0, "plateau_count": 0, "lyapunov": 0.0, "history": [],
    }  # fmt: skip
    for x in losses:
        got = ctl.observe(x)
        _reference_observe(ref, x, CFG)
        for name in ("alpha", "momentum", "sigma", "loss_ema", "reward_ema", "delta_loss"):
            assert getattr(got, name) == pytest.approx(ref[name], rel=1e-9, abs=1e-15), name
        assert got.variance == pytest.approx(ref["variance"], rel=1e-9, abs=1e-15)
        assert got.lyapunov == pytest.approx(ref["lyapunov"], rel=1e-9, abs=1e-12)
        assert got.plateau_count == ref["plateau_count"] and got.step == ref["step"]


def test_scalar_functions_are_the_batched_law_at_one_row() -> None:
    sigma = torch.tensor([1e-3, 2e-3, 5e-2], dtype=torch.float64)
    plateau = torch.tensor([0, 5, 9])
    var = torch.tensor([0.0, 0.3, math.nan], dtype=torch.float64)
    rate = torch.tensor([0.1, 0.9, 0.5], dtype=torch.float64)
    pending = torch.tensor([True, False, True])
    batched = law.next_sigma(sigma, plateau, var, rate, pending, CFG).tolist()
    scalar = [
        next_sigma(*args, CFG)
        for args in zip(
            sigma.tolist(),
            plateau.tolist(),
            var.tolist(),
            [r if p else None for r, p in zip(rate.tolist(), pending.tolist(), strict=True)],
            strict=True,
        )
    ]
    assert batched == scalar
    window = torch.tensor([[0.0, 0.0, 1.0, 3.0], [2.0, 4.0, 4.0, 9.0]], dtype=torch.float64)
    v = law.window_variance(window, torch.tensor([2, 4]))
    assert v.tolist() == [window_variance([1.0, 3.0]), window_variance([2.0, 4.0, 4.0, 9.0])]
    assert law.window_variance(window, torch.tensor([0, 1])).tolist() == [0.0, 0.0]


def test_masked_rows_are_untouched_and_reset_restarts_rows() -> None:
    state = law.init_state(3, 0.1, CFG)
    for x in (1.0, 0.8, 0.7):
        state = law.observe(state, torch.full((3,), x), None, CFG)
    before = state
    mask = torch.tensor([True, False, True])
    state = law.observe(state, torch.tensor([0.2, math.nan, 0.3]), None, CFG, mask=mask)
    assert_states_equal(row(state, 1), row(before, 1))
    assert int(state.step[0]) == 4 and int(state.step[1]) == 3
    fresh = law.reset_state(state, torch.tensor([False, True, False]), CFG)
    assert_states_equal(row(fresh, 1), row(law.init_state(3, 0.1, CFG), 1))
    assert_states_equal(row(fresh, 0), row(state, 0))


def test_filters_only_leave_the_gains_alone() -> None:
    state = law.init_state(2, 0.1, CFG)
    state = law.record_local_test(state, torch.tensor([0.0, 1.0]), CFG)
    for x in (1.0, 0.5, 0.25):
        state = law.observe(state, torch.full((2,), x), None, CFG, adapt=False)
    assert state.alpha.tolist() == [0.1, 0.1] and state.sigma.tolist() == [CFG.sigma0] * 2
    assert state.success_pending.all() and state.delta_loss[0] > 0


def test_divergence_threshold_per_row() -> None:
    state = law.init_state(2, 0.1, CFG)
    assert law.divergence_threshold(state, 3.0).tolist() == [math.inf, math.inf]
    state = law.observe(state, torch.tensor([2.0, -2.0]), None, CFG)
    assert law.divergence_threshold(state, 3.0).tolist() == [6.0, 2.0]


def test_batched_law_reads_nothing_back_to_the_host() -> None:
    b = 8
    state = law.init_state(b, torch.full((b,), 0.1), CFG)
    mask = torch.arange(b) % 3 != 0
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for x in (1.0, 0.9, 0.95):
            state = law.observe(state, torch.full((b,), x), None, CFG, mask=mask)
            state = law.observe_update(state, CFG, torch.ones(b), torch.zeros(b), mask=mask)
        state = law.record_local_test(state, torch.full((b,), 0.5), CFG, mask=mask)
        state = law.cut_alpha(state, CFG, mask=mask)
        law.divergence_threshold(state, CFG.divergence_factor)
        law.reset_state(state, ~mask, CFG)
    names = {e.name for e in prof.events()}
    assert not names & SYNC_OPS


def _plateau_counts(losses: list[list[float]], cfg: AEConfig) -> list[int]:
    """Each row's plateau count and σ after feeding its losses (one row per list)."""
    state = law.init_state(len(losses), 0.1, cfg)
    for t in range(len(losses[0])):
        state = law.observe(state, torch.tensor([row[t] for row in losses]), None, cfg)
    return state.plateau_count.tolist()


def test_slow_steady_descent_is_not_a_plateau_but_a_flat_or_noisy_one_is() -> None:
    # Relative steps of 2e-4 < plateau_tol (1e-3): the |Δℓ| test alone calls it flat.
    slow = [1.0 * (1 - 2e-4) ** t for t in range(40)]
    flat = [0.5] * 40
    gen = torch.Generator().manual_seed(0)
    noisy = (0.5 + 1e-4 * torch.randn(40, generator=gen, dtype=torch.float64)).tolist()
    slow_c, flat_c, noisy_c = _plateau_counts([slow, flat, noisy], CFG)
    assert slow_c == 0
    assert flat_c == 39
    assert noisy_c >= CFG.plateau_steps  # no significant trend: a plateau
    # The old rule (|Δℓ| alone) counted the slow descent as a plateau from its first step.
    old = AEConfig(plateau_trend_z=None)
    assert _plateau_counts([slow], old) == [39]


def test_window_descending_is_a_slope_t_test() -> None:
    window = torch.tensor(
        [[3.0, 2.0, 1.0, 0.0], [1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 2.0, 3.0], [0.0, 0.0, 5.0, 4.0]],
        dtype=torch.float64,
    )
    count = torch.tensor([4, 4, 4, 2])
    got = law.window_descending(window, count, 2.0).tolist()
    assert got == [True, False, False, False]  # the last row has only 2 valid values
    # Noisy descent 3, 1, 2, 0: slope −0.8, residuals ±0.3, ±0.9 -> SE = √(1.8 / (2·5))
    # ≈ 0.424, t ≈ 1.89: significant at z = 1.8, not at z = 2.
    noisy = torch.tensor([[3.0, 1.0, 2.0, 0.0]], dtype=torch.float64)
    assert law.window_descending(noisy, torch.tensor([4]), 1.8).item()
    assert not law.window_descending(noisy, torch.tensor([4]), 2.0).item()
