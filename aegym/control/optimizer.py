"""AEOptimizer: the AE loop (law + plant) as a ``torch.optim.Optimizer``.

Each parameter tensor is one row of the batched plant (:mod:`aegym.control.plant`):
its dither and probes are shaped by its own RMS. One scalar law
(:class:`~aegym.control.controller.AEController`, the batched law at B = 1) sets the
gains of every tensor.
"""

from __future__ import annotations

import copy
import math
import zlib
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

import torch

from aegym.control import plant
from aegym.control.config import AEConfig
from aegym.control.controller import AEController, _require_finite
from aegym.control.law import AESignals

BatchedEval = Callable[[list[list[torch.Tensor]]], torch.Tensor]
Bounds = Callable[[torch.Tensor], torch.Tensor] | tuple[float, float]


class AEStepLog(NamedTuple):
    """Everything one :meth:`AEOptimizer.step` did (flat, so ``_asdict()`` logs it).

    Gains are the ones the step used. ``loss`` is ℓ_t at θ_t (NaN/inf when it
    diverged); the filtered signals are the controller's after the step.
    """

    step: int
    loss: float
    reward: float
    alpha: float
    momentum: float
    sigma: float
    loss_ema: float
    reward_ema: float
    delta_loss: float
    delta_reward: float
    variance: float
    plateau_count: int
    grad_norm: float
    update_norm: float
    dither_norm: float
    success_rate: float
    lyapunov: float
    update_autocorr: float
    flip_rate: float
    probes: int
    probe_best_loss: float
    averaged_in: bool
    diverged: bool
    rolled_back: bool
    divergences: int


class AEOptimizer(torch.optim.Optimizer):
    """AE-DDSP optimizer: adaptive gains, dither in θ, local tests, rollback.

    One :meth:`step` runs the seed's loop (§7) on any torch parameters:

    1. evaluate ``ℓ_t`` (and ``g_t``) with the closure at θ_t;
    2. **stability**: a non-finite loss or gradient, or ``ℓ_t`` above
       :meth:`AEController.divergence_threshold`, restores the last good θ and
       optimizer state, cuts α by ``rollback_alpha_cut`` and stops the step — nothing
       non-finite reaches a filter;
    3. **scheduler**: ``controller.observe(ℓ_t, r_t)`` updates (α, μ, σ);
    4. every ``test_every`` steps, a **local test** evaluates ``n_probes`` copies
       ``θ_t + δ_i``, ``δ_i = probe_scale·D(θ_t)·η_i`` (with ``batched_eval`` in one
       call when given, else with the closure in a loop) and feeds the success rate;
    5. **gradient step + dither** (:func:`aegym.control.plant.step`, each tensor one
       row): ``h ← μh + (1 − μ)g``, ``u = α·h`` (``"sgd"``) or the Adam step with
       β1 = μ and the exact bias correction ``1 − Π μ_t`` (``"adam"``);
       ``θ ← θ − u + min(σ·D(θ_t), RMS(u))·η``, with ``D(θ) = max(RMS(θ), dither_floor)``
       per tensor (the dither is never larger than the step) and η from the optimizer's
       seeded generator — the dither goes into θ, not the gradient;
    6. clamp with ``bounds``; if the best probe beat ℓ_t, average it in:
       ``θ ← (1 − ρ)·θ + ρ·θ_best`` and clamp again;
    7. log every signal in :attr:`last_log` (an :class:`AEStepLog`).

    Each group's ``lr`` is its α0; the controller's gain ``α_t/α0`` (one scalar law
    for the whole optimizer) scales every group alike. Parameters whose ``grad`` is
    None are left untouched (no update, dither or probe).

    :param params: parameters or parameter groups.
    :param lr: α0, the reference learning rate (bounds are multiples of it).
    :param config: law constants; ``AEConfig()`` by default.
    :param bounds: valid ranges, applied after every change of θ and to probes: a
        ``(low, high)`` pair, or a callable returning the clamped copy of a tensor
        (applied to every parameter), or None.
    :param batched_eval: evaluates probes at once: receives a list of candidates, each
        a list of tensors in parameter order (``[p for g in param_groups for p in
        g["params"]]``), and returns their ``[n]`` losses. Without it, probes are
        evaluated with the closure, one by one (gradients are restored afterwards).
    """

    def __init__(
        self,
        params: Iterable[torch.Tensor] | Iterable[dict[str, Any]],
        lr: float = 1e-3,
        config: AEConfig | None = None,
        bounds: Bounds | None = None,
        batched_eval: BatchedEval | None = None,
    ) -> None:
        if isinstance(lr, bool) or not isinstance(lr, (int, float)):
            raise TypeError(f"lr must be a number > 0, got {lr!r}")
        if not math.isfinite(lr) or lr <= 0:
            raise ValueError(f"lr must be a finite number > 0, got {lr!r}")
        super().__init__(params, {"lr": float(lr)})
        self.config = config or AEConfig()
        self.controller = AEController(float(lr), self.config)
        if bounds is not None and not callable(bounds):
            low, high = bounds
            if not low <= high:
                raise ValueError(f"bounds must be (low, high) with low <= high, got {bounds!r}")
        self.bounds = bounds
        self.batched_eval = batched_eval
        seed = self.config.seed
        if seed is None:
            seed = int(torch.randint(0, 2**62, (), dtype=torch.int64).item())
        self.seed = seed
        self._generators: dict[str, torch.Generator] = {}
        self._snapshot: list[tuple[torch.Tensor, dict[str, Any]]] | None = None
        self.steps = 0
        self.divergences = 0
        self.last_log: AEStepLog | None = None

    # ---- helpers ---------------------------------------------------------------------

    def _all_params(self) -> list[torch.Tensor]:
        return [p for group in self.param_groups for p in group["params"]]

    def generator(self, device: torch.device | str) -> torch.Generator:
        """The seeded generator of ``device`` (created on first use)."""
        device = torch.device(device)
        key = str(device)
        if key not in self._generators:
            gen = torch.Generator(device=device)
            gen.manual_seed((self.seed + zlib.crc32(key.encode())) % 2**63)
            self._generators[key] = gen
        return self._generators[key]

    def _noise(self, p: torch.Tensor) -> torch.Tensor:
        return torch.randn(p.shape, generator=self.generator(p.device), device=p.device).to(p.dtype)

    def clamp(self, value: torch.Tensor) -> torch.Tensor:
        """Apply ``bounds`` to a tensor (returns a new tensor; identity without bounds)."""
        if self.bounds is None:
            return value
        if callable(self.bounds):
            return self.bounds(value)
        low, high = self.bounds
        return value.clamp(low, high)

    def _take_snapshot(self) -> None:
        self._snapshot = [
            (p.detach().clone(), copy.deepcopy(self.state[p]) if p in self.state else {})
            for p in self._all_params()
        ]

    @torch.no_grad()
    def _restore_snapshot(self) -> bool:
        if self._snapshot is None:
            return False
        for p, (saved, state) in zip(self._all_params(), self._snapshot, strict=True):
            p.copy_(saved)
            self.state[p] = copy.deepcopy(state)
        return True

    def _evaluate(self, closure: Callable[[], Any] | None) -> Any:
        if closure is None:
            return None
        with torch.enable_grad():
            return closure()

    @staticmethod
    def _split_loss(out: Any) -> tuple[Any, float | None]:
        if isinstance(out, tuple):
            if len(out) != 2:
                raise ValueError("closure must return loss or (loss, reward)")
            loss, reward = out
            return loss, None if reward is None else float(reward)
        return out, None

    @torch.no_grad()
    def _probe_losses(
        self, candidates: list[list[torch.Tensor]], closure: Callable[[], Any] | None
    ) -> torch.Tensor:
        if self.batched_eval is not None:
            losses = torch.as_tensor(self.batched_eval(candidates)).detach().flatten().float()
            if losses.numel() != len(candidates):
                raise ValueError(
                    f"batched_eval returned {losses.numel()} losses for {len(candidates)} probes"
                )
            return losses.cpu()
        assert closure is not None
        params = self._all_params()
        saved = [p.detach().clone() for p in params]
        grads = [None if p.grad is None else p.grad.detach().clone() for p in params]
        values = []
        try:
            for cand in candidates:
                for p, c in zip(params, cand, strict=True):
                    p.copy_(c)
                loss, _ = self._split_loss(self._evaluate(closure))
                values.append(float(loss))
        finally:
            for p, s, g in zip(params, saved, grads, strict=True):
                p.copy_(s)
                p.grad = g
        return torch.tensor(values)

    # ---- the step --------------------------------------------------------------------

    def step(  # type: ignore[override]
        self,
        closure: Callable[[], Any] | None = None,
        *,
        loss: float | torch.Tensor | None = None,
        reward: float | None = None,
    ) -> Any:
        """Run one AE step and return what the closure returned (or ``loss``).

        :param closure: clears gradients, computes the loss, calls ``backward()`` and
            returns the loss — or ``(loss, reward)``. It is also used for probes when
            no ``batched_eval`` is given (their gradients are discarded).
        :param loss: when there is no closure: the loss at θ_t, with gradients already
            in ``p.grad``. Local tests then need ``batched_eval`` (else they are skipped).
        :param reward: r_t for the momentum law; None uses the closure's reward or −ℓ_t.
        """
        if closure is None and loss is None:
            raise ValueError("AEOptimizer.step needs a closure or loss=... (the law needs ℓ_t)")
        cfg = self.config
        out = self._evaluate(closure)
        if closure is not None:
            loss, closure_reward = self._split_loss(out)
            reward = closure_reward if reward is None else reward
        else:
            out = loss
        if isinstance(loss, torch.Tensor):
            loss = loss.detach().item()
        loss_value = float(loss)  # type: ignore[arg-type]
        if reward is not None:
            reward = _require_finite("reward", reward)

        params = self._all_params()
        active = [p.grad is not None for p in params]
        if cfg.update_rule == "adam":
            for k, p in enumerate(params):
                if p.grad is not None and p.grad.is_sparse:
                    raise ValueError(
                        f"AEOptimizer(update_rule='adam') needs dense gradients, parameter {k} "
                        f"(shape {tuple(p.shape)}) has a sparse grad; use update_rule='sgd' "
                        "or a dense layer (e.g. nn.Embedding(..., sparse=False))"
                    )
        grad_sq = 0.0
        for p, on in zip(params, active, strict=True):
            if on:
                grad_sq += float(p.grad.detach().double().pow(2).sum())  # type: ignore[union-attr]
        grad_norm = math.sqrt(grad_sq) if math.isfinite(grad_sq) else math.inf

        diverged = (
            not math.isfinite(loss_value)
            or not math.isfinite(grad_norm)
            or loss_value > self.controller.divergence_threshold()
        )
        if diverged:
            rolled_back = self._restore_snapshot()
            self.controller.cut_alpha()
            self.divergences += 1
            self._log(loss_value, reward, 0.0, 0, math.nan, False, True, rolled_back)
            self.steps += 1
            return out

        self._take_snapshot()
        observed = self.controller.observe(loss_value, reward, grad_norm=grad_norm)
        alpha, mu, sigma = observed.alpha, observed.momentum, observed.sigma
        scale = alpha / self.controller.alpha0

        # Local test at θ_t (probes see the parameters before this step's update).
        n_probes, best_loss, verdict, candidates = 0, math.nan, None, None
        if (
            cfg.n_probes > 0
            and (self.steps + 1) % cfg.test_every == 0
            and (self.batched_eval is not None or closure is not None)
        ):
            candidates = self._probes(params, active)
            losses = self._probe_losses(candidates, closure)
            verdict = plant.judge(losses[None], torch.tensor([loss_value], dtype=torch.float64))
            n_probes = len(candidates)
            best_loss = float(verdict.best_loss)
            self.controller.record_local_test(float(verdict.success))

        update_sq = dither_sq = dot = prev_sq = 0.0
        flips = count = 0
        lrs = [scale * group["lr"] for group in self.param_groups for _ in group["params"]]
        with torch.no_grad():
            for k, (p, lr) in enumerate(zip(params, lrs, strict=True)):
                if p.grad is None:
                    continue
                probes = None
                if verdict is not None and candidates is not None:
                    best = candidates[int(verdict.index)][k]
                    probes = plant.ProbeResult(
                        best=best.reshape(1, -1),
                        best_loss=verdict.best_loss,
                        win=verdict.win,
                        success=verdict.success,
                        tested=torch.ones(1, dtype=torch.bool),
                    )
                moved = self._step_param(p, lr, mu, sigma, probes)
                update = moved.update.reshape(p.shape)
                state = self.state[p]
                prev = state.get("prev_update")
                if prev is not None:
                    dot += float((update * prev).sum())
                    prev_sq += float(prev.pow(2).sum())
                    flips += int(((update * prev) < 0).sum())
                    count += update.numel()
                state["prev_update"] = update.clone()
                update_sq += float(update.pow(2).sum())
                dither_sq += float(moved.dither.pow(2).sum())

        cosine = None
        if prev_sq > 0 and update_sq > 0:
            cosine = max(-1.0, min(1.0, dot / math.sqrt(prev_sq * update_sq)))
        signals = self.controller.observe_update(
            math.sqrt(update_sq), cosine, flips / count if count else None
        )
        self._log(
            loss_value,
            signals.reward,
            math.sqrt(dither_sq),
            n_probes,
            best_loss,
            verdict is not None and bool(verdict.win),
            False,
            False,
            gains=(alpha, mu, sigma),
            signals=signals,
        )
        self.steps += 1
        return out

    def _probes(self, params: list[torch.Tensor], active: list[bool]) -> list[list[torch.Tensor]]:
        """``n_probes`` candidates ``clamp(θ_t + probe_scale·D(θ_t)·η_i)``, each a list of
        tensors in parameter order (parameters without a gradient are copied as they are)."""
        cfg = self.config
        with torch.no_grad():
            # Noise is drawn probe by probe, parameter by parameter (the generator's order).
            noise = [
                [self._noise(p) if on else None for p, on in zip(params, active, strict=True)]
                for _ in range(cfg.n_probes)
            ]
            columns = []
            for k, (p, on) in enumerate(zip(params, active, strict=True)):
                if not on:
                    columns.append([p.detach().clone() for _ in range(cfg.n_probes)])
                    continue
                eta = torch.stack([draw[k] for draw in noise]).reshape(1, cfg.n_probes, -1)
                rows = plant.probe(p.detach().reshape(1, -1), eta, cfg)[0]
                columns.append([self.clamp(row.reshape(p.shape)) for row in rows])
        return [list(candidate) for candidate in zip(*columns, strict=True)]

    def _step_param(
        self,
        p: torch.Tensor,
        lr: float,
        mu: float,
        sigma: float,
        probes: plant.ProbeResult | None,
    ) -> plant.PlantStep:
        """One plant step of ``p`` as a single row; updates ``p`` and its state in place."""
        cfg = self.config
        state = self.state[p]
        if "h" not in state:
            state["h"] = torch.zeros_like(p, memory_format=torch.preserve_format)
            state["t"] = 0
            if cfg.update_rule == "adam":
                state["v"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                state["bias1"] = 1.0
                state["bias2"] = 1.0
        adam = cfg.update_rule == "adam"
        memory = plant.PlantState(
            h=state["h"].reshape(1, -1),
            v=state["v"].reshape(1, -1) if adam else None,
            bias1=torch.tensor([state["bias1"]], dtype=torch.float64) if adam else None,
            bias2=torch.tensor([state["bias2"]], dtype=torch.float64) if adam else None,
        )
        grad = p.grad.detach()  # type: ignore[union-attr]
        if grad.is_sparse:
            grad = grad.to_dense()
        gain = [torch.tensor([x], dtype=torch.float64) for x in (lr, mu, sigma)]
        theta = p.detach().reshape(1, -1)
        moved = plant.step(
            memory,
            theta,
            grad.reshape(1, -1),
            *gain,
            cfg,
            noise=self._noise(p).reshape(1, -1) if sigma > 0 else None,
            bounds=None if self.bounds is None else self._row_bounds(p),
            probes=probes,
        )
        p.copy_(moved.theta.reshape(p.shape))
        state["h"] = moved.state.h.reshape(p.shape)
        state["t"] += 1
        if adam:
            state["v"] = moved.state.v.reshape(p.shape)  # type: ignore[union-attr]
            state["bias1"] = moved.state.bias1.item()  # type: ignore[union-attr]
            state["bias2"] = moved.state.bias2.item()  # type: ignore[union-attr]
        return moved

    def _row_bounds(self, p: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """``bounds`` applied to ``p``'s row as a tensor of ``p``'s own shape."""
        return lambda row: self.clamp(row.reshape(p.shape)).reshape(row.shape)

    def _log(
        self,
        loss: float,
        reward: float | None,
        dither_norm: float,
        probes: int,
        probe_best_loss: float,
        averaged_in: bool,
        diverged: bool,
        rolled_back: bool,
        gains: tuple[float, float, float] | None = None,
        signals: AESignals | None = None,
    ) -> None:
        s = self.controller.signals if signals is None else signals
        alpha, momentum, sigma = gains if gains is not None else self.controller.gains
        self.last_log = AEStepLog(
            step=self.steps,
            loss=loss,
            reward=math.nan if reward is None else float(reward),
            alpha=alpha,
            momentum=momentum,
            sigma=sigma,
            loss_ema=s.loss_ema,
            reward_ema=s.reward_ema,
            delta_loss=s.delta_loss,
            delta_reward=s.delta_reward,
            variance=s.variance,
            plateau_count=s.plateau_count,
            grad_norm=s.grad_norm if not diverged else math.nan,
            update_norm=s.update_norm if not diverged else 0.0,
            dither_norm=dither_norm,
            success_rate=s.success_rate,
            lyapunov=s.lyapunov,
            update_autocorr=s.update_autocorr,
            flip_rate=s.flip_rate,
            probes=probes,
            probe_best_loss=probe_best_loss,
            averaged_in=averaged_in,
            diverged=diverged,
            rolled_back=rolled_back,
            divergences=self.divergences,
        )

    # ---- persistence -----------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:  # type: ignore[override]
        """Torch optimizer state plus ``"ae"``: controller, generators, counters and the
        last good snapshot, so a resumed run continues identically."""
        state = super().state_dict()
        snapshot = None
        if self._snapshot is not None:
            snapshot = [
                {"param": saved.clone(), "state": copy.deepcopy(st)} for saved, st in self._snapshot
            ]
        state["ae"] = {
            "controller": self.controller.state_dict(),
            "generators": {k: g.get_state().tolist() for k, g in self._generators.items()},
            "seed": self.seed,
            "steps": self.steps,
            "divergences": self.divergences,
            "snapshot": snapshot,
        }
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:  # type: ignore[override]
        """Restore a :meth:`state_dict` (tensors are copied, never shared)."""
        state_dict = copy.deepcopy(state_dict)
        if "ae" not in state_dict:
            raise ValueError("not an AEOptimizer state dict: missing the 'ae' entry")
        ae = state_dict.pop("ae")
        super().load_state_dict(state_dict)
        self.controller.load_state_dict(ae["controller"])
        self.seed = int(ae["seed"])
        self.steps = int(ae["steps"])
        self.divergences = int(ae["divergences"])
        self._generators = {}
        for key, gen_state in ae["generators"].items():
            self.generator(key).set_state(torch.tensor(gen_state, dtype=torch.uint8))
        if ae["snapshot"] is None:
            self._snapshot = None
        else:
            params = self._all_params()
            if len(params) != len(ae["snapshot"]):
                raise ValueError("snapshot does not match the optimizer's parameters")
            self._snapshot = [
                (
                    entry["param"].to(device=p.device, dtype=p.dtype),
                    {
                        k: v.to(p.device) if isinstance(v, torch.Tensor) else v
                        for k, v in entry["state"].items()
                    },
                )
                for p, entry in zip(params, ae["snapshot"], strict=True)
            ]
