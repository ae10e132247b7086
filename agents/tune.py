"""``python -m agents tune-adam`` / ``tune-ae``: tune the Adam and AE baselines on train targets.

``tune-ae`` (:func:`tune_ae`, :func:`main_ae`) searches the AE law's constants with
Optuna's TPE sampler, checks the winner against the defaults on held-out *train*
episodes (:func:`validate_ae`: other targets and seeds than the search's) and, with
``--write``, stores it per env kind in ``agents/hyperparams/ae_law.json``, which the
``ae`` baseline reads — under the file's ``"rejected"`` key when the check fails.

``tune-adam``:

Runs :func:`agents.baselines.tune_adam_lr` on SchedulerGains' *train* targets and
prints the mean final distance per multiplier and the winner (copy it into
``agents/hyperparams/__init__.py``: ``ADAM_LR_MULTIPLIER`` and ``ADAM_TUNING_RESULT``).
With a knob env (``--env-id AEGym/SoundMatch-Easy-v1``) it runs
:func:`agents.baselines.tune_adam_knob_lr` over ``--lrs`` instead (``ADAM_KNOB_LR``,
``ADAM_KNOB_TUNING_RESULT``).
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import torch

from aegym.audio_io import atomic_write_bytes
from aegym.control.config import AEConfig
from agents.baselines import (
    AEBaseline,
    EpisodeScore,
    EpisodeSet,
    tune_adam_knob_lr,
    tune_adam_lr,
)
from agents.common.checks import check_count
from agents.common.cli import parse_args
from agents.common.envs import env_family
from agents.common.statistics import compare
from agents.hyperparams import (
    ADAM_KNOB_LR_GRID,
    ADAM_LR_GRID,
    AE_ALPHA0,
    AE_TUNED_PATH,
    load_ae_tuning,
)


@dataclass
class TuneArgs:
    """Pick the Adam baseline's constant learning rate on an env's train targets."""

    env_id: str = "AEGym/SchedulerGains-v1"
    """env to tune on: SchedulerGains (multipliers of α0) or a knob env (--lrs)"""
    multipliers: list[float] = field(default_factory=lambda: list(ADAM_LR_GRID))
    """SchedulerGains: candidate learning rates in units of α0"""
    lrs: list[float] = field(default_factory=lambda: list(ADAM_KNOB_LR_GRID))
    """knob envs: candidate step sizes in normalized knob units"""
    n_targets: int = 16
    """train targets, spread evenly over the set"""
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    """episode seeds"""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """SchedulerGains keyword arguments as a JSON object"""
    native_vec: bool = True
    """use aegym's native batched vector env when available"""
    torch_threads: int = 1
    """torch intra-op threads"""


def main(argv: list[str] | None = None) -> int:
    """Run the tuning and print the results as JSON.

    :param argv: command-line words (None: ``sys.argv``).
    """
    args = parse_args(TuneArgs, argv, prog="python -m agents tune-adam")
    if any(not m > 0 for m in args.multipliers):
        print(f"error: multipliers must be > 0, got {args.multipliers}")
        return 2
    torch.set_num_threads(args.torch_threads)
    t0 = time.perf_counter()
    if env_family(args.env_id) == "knob":
        if any(not lr > 0 for lr in args.lrs):
            print(f"error: lrs must be > 0, got {args.lrs}")
            return 2
        knob = tune_adam_knob_lr(
            args.lrs, args.env_id, args.n_targets, args.seeds, args.native_vec, **args.env_kwargs
        )
        out = {
            "env_id": args.env_id,
            "best": knob.best,
            "mean_final_distance": knob.mean_final_distance,
            "success_rate": knob.success_rate,
            "n_episodes": knob.n_episodes,
            "wall_s": round(time.perf_counter() - t0, 1),
        }
        print(json.dumps(out, indent=2))
        return 0
    res = tune_adam_lr(
        args.multipliers, args.n_targets, args.seeds, args.native_vec, **args.env_kwargs
    )
    print(
        json.dumps(
            {
                "best": res.best,
                "mean_final_distance": res.mean_final_distance,
                "n_episodes": res.n_episodes,
                "wall_s": round(time.perf_counter() - t0, 1),
            },
            indent=2,
        )
    )
    return 0


def import_optuna(command: str) -> Any:
    """Optuna (the optional ``[tune]`` extra), or an ImportError naming ``command`` and
    the install command.

    :param command: the ``python -m agents`` command that needs it (for the message).
    """
    try:
        import optuna
    except ImportError as err:
        raise ImportError(f'{command} needs Optuna: pip install -e ".[tune]"') from err
    return optuna


# --------------------------------------------------------------------------------------
# tune-ae: the AE law's constants
# --------------------------------------------------------------------------------------

#: Constants every AE search varies (the law of the design: trend- and variance-aware
#: α, reward-nudged μ, plateau-gated σ), as (low, high, log scale).
_LAW_SPACE: dict[str, tuple[float, float, bool]] = {
    "eps": (1e-5, 1e-1, True),
    "up": (1.0, 1.5, False),
    "down": (0.3, 0.99, False),
    "var_damping": (1e-2, 100.0, True),
    "alpha_min_factor": (0.03, 1.0, True),
    "alpha_max_factor": (1.0, 30.0, True),
    "momentum_step": (0.0, 0.05, False),
    "momentum_decay": (0.0, 0.3, False),
    "momentum_max": (0.8, 0.99, False),
    "plateau_boost": (1.0, 3.0, False),
    "sigma_var_damping": (1e-2, 100.0, True),
    "sigma_decay": (0.5, 1.0, False),
    "success_gain": (0.0, 5.0, False),
}
#: Integer constants of every search: (low, high).
_LAW_INT_SPACE: dict[str, tuple[int, int]] = {"plateau_steps": (2, 20), "test_every": (2, 50)}
#: Knob envs only: the policy's own start gains and local tests (on SchedulerGains the
#: env sets the start gains and runs the probes with its own constants).
_KNOB_SPACE: dict[str, tuple[float, float, bool]] = {
    "alpha0": (0.01, 0.5, True),
    "momentum0": (0.5, 0.95, False),
    "sigma0": (1e-5, 1e-1, True),
    "probe_scale": (0.005, 0.3, True),
    "rho": (0.05, 1.0, False),
}
_KNOB_INT_SPACE: dict[str, tuple[int, int]] = {"n_probes": (0, 16)}


def ae_search_space(
    kind: str,
) -> tuple[dict[str, tuple[float, float, bool]], dict[str, tuple[int, int]]]:
    """The (float, int) search space of the AE law on an env kind ("sound_match" or
    "scheduler"): name -> (low, high, log) and name -> (low, high)."""
    if kind == "scheduler":
        return dict(_LAW_SPACE), dict(_LAW_INT_SPACE)
    return {**_LAW_SPACE, **_KNOB_SPACE}, {**_LAW_INT_SPACE, **_KNOB_INT_SPACE}


def ae_settings_from(params: dict[str, Any]) -> tuple[AEConfig, float | None]:
    """``(AEConfig, alpha0)`` from a search point (unlisted constants at their defaults;
    μ0 is capped at μmax, σ0 kept within [σ_min, σ_max])."""
    values = AEConfig().to_dict() | dict(params)
    alpha0 = values.pop("alpha0", None)
    values["momentum0"] = min(values["momentum0"], values["momentum_max"])
    values["sigma_min"] = min(values["sigma_min"], values["sigma0"])
    return AEConfig.from_dict(values), alpha0


def _default_point(kind: str) -> dict[str, Any]:
    floats, ints = ae_search_space(kind)
    base = AEConfig().to_dict() | {"alpha0": AE_ALPHA0}
    return {name: base[name] for name in (*floats, *ints)}


@dataclass(frozen=True)
class AETuning:
    """Outcome of :func:`tune_ae`.

    :param kind: env kind ("sound_match" or "scheduler").
    :param best: the best search point (constants and, on knob envs, ``alpha0``).
    :param best_score: its train score.
    :param default_score: the default constants' train score (trial 0).
    :param trials: every trial's point and mean final distance, in order.
    """

    kind: str
    best: dict[str, Any]
    best_score: EpisodeScore
    default_score: EpisodeScore
    trials: list[dict[str, Any]]


def tune_ae(
    env_id: str,
    trials: int,
    n_targets: int,
    seeds: list[int],
    sampler_seed: int = 0,
    native: bool = True,
    progress: bool = True,
    timeout_s: float | None = None,
    **env_kwargs: Any,
) -> AETuning:
    """Search the AE law's constants on an env's *train* episodes with Optuna's TPE
    sampler (seeded); the objective is the mean final distance of the ``ae`` baseline
    (:class:`agents.baselines.AEBaseline`) on the same episodes for every trial
    (:class:`agents.baselines.EpisodeSet`). Trial 0 is the default constants.

    :param env_id: ``AEGym/SchedulerGains-v1`` or a SoundMatch tier.
    :param trials: number of trials (>= 1, the default included).
    :param n_targets: train targets, spread evenly.
    :param seeds: episode seeds.
    :param sampler_seed: the sampler's seed.
    :param native: use the native batched vector env.
    :param progress: print one line per trial.
    :param timeout_s: start no new trial after this many seconds (None: run all).
    :param env_kwargs: env keyword arguments.
    :raises ImportError: without ``optuna`` (:func:`import_optuna`).
    """
    optuna = import_optuna("tune-ae")
    family = env_family(env_id)
    kind = "scheduler" if family == "scheduler" else "sound_match"
    if family not in ("knob", "scheduler") or "Live" in env_id:
        raise ValueError(f"tune-ae tunes SoundMatch tiers and SchedulerGains-v1, got {env_id!r}")
    floats, ints = ae_search_space(kind)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="minimize", sampler=optuna.samplers.TPESampler(seed=sampler_seed)
    )
    study.enqueue_trial(_default_point(kind))
    scores: list[EpisodeScore] = []
    with EpisodeSet(env_id, n_targets, seeds, native, **env_kwargs) as episodes:

        def objective(trial: Any) -> float:
            point: dict[str, Any] = {
                name: trial.suggest_float(name, lo, hi, log=log)
                for name, (lo, hi, log) in floats.items()
            }
            point |= {name: trial.suggest_int(name, lo, hi) for name, (lo, hi) in ints.items()}
            cfg, alpha0 = ae_settings_from(point)
            res = episodes.score(lambda v: AEBaseline(v, alpha0=alpha0, config=cfg))
            scores.append(res)
            if progress:
                print(
                    f"trial {trial.number}: mean final distance {res.mean_final_distance:.4f}"
                    f" success {res.success_rate:.3f}",
                    flush=True,
                )
            return res.mean_final_distance

        study.optimize(objective, n_trials=trials, timeout=timeout_s)
    best = study.best_trial
    return AETuning(
        kind,
        dict(best.params),
        scores[best.number],
        scores[0],
        [
            {"params": t.params, "mean_final_distance": t.value, "success": s.success_rate}
            for t, s in zip(study.trials, scores, strict=True)
        ],
    )


def validate_ae(
    env_id: str,
    config: AEConfig,
    alpha0: float | None,
    n_targets: int,
    seeds: list[int],
    native: bool = True,
    **env_kwargs: Any,
) -> dict[str, Any]:
    """The held-out check of a tuned AE law: the defaults and ``config`` play the same
    *train* episodes (``n_targets`` spread evenly × ``seeds``, meant to differ from the
    search's), compared pairwise on final distance with a target-clustered CI
    (:func:`agents.common.statistics.compare`). ``passed`` only when the tuned law is
    better with the CI excluding 0 — a search's gain that does not replicate on other
    episodes is noise fitted by the search.

    :return: JSON-ready record (means, success rates, the comparison, ``passed``).
    """
    out: dict[str, Any] = {"n_targets": n_targets, "seeds": list(seeds)}
    with EpisodeSet(env_id, n_targets, seeds, native, **env_kwargs) as episodes:
        targets = [spec.target_index for spec in episodes.specs]
        dist = {}
        for name, cfg, a0 in (("default", AEConfig(), None), ("tuned", config, alpha0)):
            res = episodes.score(lambda v, c=cfg, a=a0: AEBaseline(v, alpha0=a, config=c))
            dist[name] = [e.final_distance for e in episodes.episodes]
            out[f"{name}_mean_final_distance"] = res.mean_final_distance
            out[f"{name}_success"] = res.success_rate
    c = compare(dist["tuned"], dist["default"], targets, "final_distance", higher_is_better=False)
    out["tuned_minus_default"] = asdict(c)
    out["passed"] = c.verdict == "better"
    return out


@dataclass
class TuneAEArgs:
    """Tune the AE law's constants on an env's train targets (Optuna TPE, seeded)."""

    env_id: str = "AEGym/SoundMatch-Easy-v1"
    """AEGym/SchedulerGains-v1 or a SoundMatch tier (its tuning serves every tier)"""
    trials: int = 40
    """trials, the default constants first"""
    n_targets: int = 12
    """train targets, spread evenly over the set"""
    seeds: list[int] = field(default_factory=lambda: [0])
    """episode seeds"""
    sampler_seed: int = 0
    """seed of the TPE sampler"""
    timeout_s: float | None = None
    """start no new trial after this many seconds (the trials run so far count)"""
    validate_targets: int = 48
    """held-out check: train targets (spread evenly) on which the winner must beat the
    defaults before --write uses it (0: no check)"""
    validate_seeds: list[int] = field(default_factory=lambda: [100, 101])
    """episode seeds of the held-out check (other than --seeds: other episodes)"""
    write: bool = False
    """store the winner in agents/hyperparams/ae_law.json (read by the `ae` baseline) if
    it passes the held-out check, else under its "rejected" key"""
    json: str | None = None
    """write the whole search record (every trial) here"""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """env keyword arguments as a JSON object"""
    native_vec: bool = True
    """use aegym's native batched vector env when available"""
    torch_threads: int = 1
    """torch intra-op threads"""


def main_ae(argv: list[str] | None = None) -> int:
    """``python -m agents tune-ae``: run :func:`tune_ae`, print the winner as JSON and,
    with ``--write``, store it in :data:`agents.hyperparams.AE_TUNED_PATH`.

    :param argv: command-line words (None: ``sys.argv``).
    """
    args = parse_args(TuneAEArgs, argv, prog="python -m agents tune-ae")
    try:
        check_count("trials", args.trials)
        check_count("validate_targets", args.validate_targets, 0)
    except ValueError as err:
        print(f"error: {err}")
        return 2
    torch.set_num_threads(args.torch_threads)
    t0 = time.perf_counter()
    res = tune_ae(
        args.env_id,
        args.trials,
        args.n_targets,
        args.seeds,
        args.sampler_seed,
        args.native_vec,
        timeout_s=args.timeout_s,
        **args.env_kwargs,
    )
    cfg, alpha0 = ae_settings_from(res.best)
    default = AEConfig().to_dict()
    search = {
        "env_id": args.env_id,
        "command": "python -m agents tune-ae "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "sampler": f"optuna TPESampler(seed={args.sampler_seed}), trial 0 = defaults",
        "trials": len(res.trials),
        "episodes": res.best_score.n_episodes,
        "train_mean_final_distance": res.best_score.mean_final_distance,
        "train_success": res.best_score.success_rate,
        "default_train_mean_final_distance": res.default_score.mean_final_distance,
        "default_train_success": res.default_score.success_rate,
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    entry = {
        "config": {k: v for k, v in cfg.to_dict().items() if v != default[k]},
        "alpha0": alpha0,
        "search": search,
    }
    passed = True
    if args.validate_targets > 0:
        entry["validation"] = validate_ae(
            args.env_id,
            cfg,
            alpha0,
            args.validate_targets,
            args.validate_seeds,
            args.native_vec,
            **args.env_kwargs,
        )
        passed = entry["validation"]["passed"]
    print(json.dumps(entry, indent=2))
    if args.json:
        record = json.dumps({**entry, "all_trials": res.trials}, indent=2)
        atomic_write_bytes(args.json, record.encode())
    if args.write:
        table = load_ae_tuning()
        rejected = table.setdefault("rejected", {})
        if passed:
            table[res.kind] = entry
            rejected.pop(res.kind, None)
        else:
            rejected[res.kind] = entry
            print(
                f"held-out check failed: the {res.kind} constants are stored under "
                "'rejected' and the ae baseline keeps what it used before"
            )
        if not rejected:
            del table["rejected"]
        text = json.dumps(table, indent=2, sort_keys=True) + "\n"
        atomic_write_bytes(AE_TUNED_PATH, text.encode())
    return 0


def ae_ablations(config: AEConfig) -> dict[str, tuple[AEConfig, bool]]:
    """The ablations of the AE controller at ``config``: name -> (constants, adapt).

    * ``full``: the law as given;
    * ``no_dither``: σ0 = σ_min = 0 (the σ law multiplies 0: no dither ever);
    * ``no_local_tests``: ``n_probes = 0``;
    * ``no_variance_damping``: λ = λσ = 0;
    * ``frozen``: no dither, no tests, and the law frozen (``adapt=False``): plain Adam
      at α0 with β1 = μ0 — the same constants without the controller.
    """
    quiet = replace(config, sigma0=0.0, sigma_min=0.0)
    return {
        "full": (config, True),
        "no_dither": (quiet, True),
        "no_local_tests": (replace(config, n_probes=0), True),
        "no_variance_damping": (replace(config, var_damping=0.0, sigma_var_damping=0.0), True),
        "frozen": (replace(quiet, n_probes=0), False),
    }
