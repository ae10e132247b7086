"""Every agent setting in one place: per-env, per-algorithm SB3 hyperparameters, the
shaped-PPO switches, the reference step of the AE baseline and Adam's tuned rate.

The RL Baselines3 Zoo files beside this module (``ppo.yml``, ``sac.yml``, ``a2c.yml``)
are generated from these values by ``python -m agents zoo-hyperparams`` (see
:mod:`agents.zoo`); regenerate them after changing anything here.

Choices common to all: small MLPs (two layers of 64 units), CPU, no observation or
reward normalization wrappers (aegym observations are already O(1) and clipped; the
composite reward's terms are bounded). Discounts follow the horizons: γ = 0.95 for the
50-step SoundMatch-Easy and 64-step live tracking episodes, γ = 0.97 for the 100-step
Medium and Full tiers, γ = 0.9 for the 20-step SchedulerGains episodes.
SchedulerGains steps are ~20x costlier (each runs inner gradient steps), so its
rollouts are shorter.

``ADAM_LR_MULTIPLIER`` was picked by :func:`agents.baselines.tune_adam_lr` — every
multiplier in ``ADAM_LR_GRID`` ran the same 32 SchedulerGains episodes on *train*
targets (16 targets spread evenly over the set × seeds 0 and 1; default env settings:
0.5 s notes, 5 inner steps, 20 env steps); the lowest mean final distance won — 0.125·α0,
inside the grid (distance 2.47 vs 2.77 at 1/32 and 2.89 at 2). Rerun with
``python -m agents tune-adam`` (results in ``ADAM_TUNING_RESULT``).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from aegym.control.config import AEConfig
from agents.common.envs import check_env_id
from agents.common.registry import check_algo
from agents.shaped_ppo import ShapingConfig

#: Env keyword arguments every training run starts from (a run's ``env_kwargs`` override
#: them): agents train on the *train* target set and are evaluated on the test set.
TRAIN_ENV_KWARGS: MappingProxyType[str, Any] = MappingProxyType({"target": "train"})

#: Network of every policy and critic: two hidden layers of 64 units.
_NET = {"net_arch": [64, 64]}
_NET_SAC = {"net_arch": [64, 64]}


@dataclass(frozen=True)
class AlgoSettings:
    """How to train one algorithm on one env.

    :param n_envs: parallel envs in the training VecEnv.
    :param kwargs: SB3 constructor keyword arguments (``policy_kwargs`` included).
    :param shaping: shaped-PPO switches (only for ``shaped_ppo``).
    """

    n_envs: int
    kwargs: dict[str, Any] = field(default_factory=dict)
    shaping: ShapingConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (saved into every run folder)."""
        out: dict[str, Any] = {"n_envs": self.n_envs, "kwargs": self.kwargs}
        if self.shaping is not None:
            out["shaping"] = self.shaping.to_dict()
        return out


def _ppo(n_steps: int, batch_size: int, gamma: float, **extra: Any) -> dict[str, Any]:
    return {
        "n_steps": n_steps,
        "batch_size": batch_size,
        "n_epochs": 10,
        "learning_rate": 3e-4,
        "gamma": gamma,
        "gae_lambda": 0.95,
        "clip_range": 0.2,
        "ent_coef": 0.0,
        "policy_kwargs": {**_NET, "log_std_init": -0.5},
        **extra,
    }


#: PPO's hyperparameters as ``python -m agents tune-rl`` found them on
#: SoundMatch-Easy-v1's *train* set (Optuna TPE + median pruner, 16 trials × 10k steps,
#: scored by the mean final distance on 16 train targets; 972 s on the 2-core box):
#: ``python -m agents tune-rl --env-id AEGym/SoundMatch-Easy-v1 --algo ppo --trials 16
#: --timesteps 10000 --out bench/tune_ppo``. Best trial 1.26 vs 2.32 for the first
#: (random) trial. Retrained 3 seeds × 30k steps, on 64 test episodes: 35.4 % success
#: (PPO), 42.7 % (shaped PPO with these values).
PPO_TUNED_EASY: MappingProxyType[str, Any] = MappingProxyType(
    {
        "n_steps": 64,
        "batch_size": 256,
        "n_epochs": 20,
        "learning_rate": 1.7455e-4,
        "gamma": 0.95,
        "gae_lambda": 0.9,
        "clip_range": 0.2,
        "ent_coef": 1.7486e-4,
        "log_std_init": -0.6666,
    }
)


def _ppo_tuned(n_steps: int, batch_size: int, gamma: float) -> dict[str, Any]:
    """PPO on a knob env with :data:`PPO_TUNED_EASY`'s optimizer settings; the rollout
    length, minibatch and discount follow the tier's horizon (on Easy and Live they are
    the tuned ones; the 100-step tiers carry the Easy values over, untuned)."""
    tuned = dict(PPO_TUNED_EASY)
    log_std = tuned.pop("log_std_init")
    tuned.update(n_steps=n_steps, batch_size=batch_size, gamma=gamma)
    return {**tuned, "policy_kwargs": {**_NET, "log_std_init": log_std}}


def _a2c(n_steps: int, gamma: float) -> dict[str, Any]:
    return {
        "n_steps": n_steps,
        "learning_rate": 7e-4,
        "gamma": gamma,
        "gae_lambda": 0.95,
        "ent_coef": 0.0,
        "normalize_advantage": True,
        "policy_kwargs": {**_NET, "log_std_init": -0.5},
    }


def _sac(gamma: float, learning_starts: int, gradient_steps: int) -> dict[str, Any]:
    return {
        "learning_rate": 3e-4,
        "buffer_size": 100_000,
        "learning_starts": learning_starts,
        "batch_size": 128,
        "tau": 0.01,
        "gamma": gamma,
        "train_freq": 1,
        "gradient_steps": gradient_steps,
        "policy_kwargs": _NET_SAC,
    }


#: Channel weights of shaped PPO: the audio match leads; optimizer-health and
#: trajectory terms and penalties are kept but lighter; the residual (divergence
#: penalty) and the potential term count fully.
SHAPING_WEIGHTS: dict[str, float] = {
    "aud": 1.0,
    "opt": 0.25,
    "pol": 0.25,
    "pen": 0.5,
    "other": 1.0,
    "shaping": 1.0,
}

_SHAPING_KNOB = ShapingConfig(
    term_weights=SHAPING_WEIGHTS, potential_coef=1.0, kl_coef=0.05, kl_ref_std=0.3
)
_SHAPING_SCHED = ShapingConfig(
    term_weights=SHAPING_WEIGHTS, potential_coef=1.0, kl_coef=0.05, kl_ref_std=0.3
)


def _knob_settings(n_steps: int, batch_size: int, gamma: float) -> MappingProxyType:
    """Every algorithm's settings on a knob env: PPO/shaped PPO rollouts of ``n_steps``
    per env, A2C 8-step rollouts, SAC after 1000 steps, one discount ``gamma``."""
    return MappingProxyType(
        {
            "ppo": AlgoSettings(8, _ppo_tuned(n_steps, batch_size, gamma)),
            "shaped_ppo": AlgoSettings(8, _ppo_tuned(n_steps, batch_size, gamma), _SHAPING_KNOB),
            "a2c": AlgoSettings(8, _a2c(8, gamma)),
            "sac": AlgoSettings(4, _sac(gamma, 1000, 1)),
        }
    )


HYPERPARAMS: MappingProxyType[str, MappingProxyType[str, AlgoSettings]] = MappingProxyType(
    {
        "AEGym/SoundMatch-Easy-v1": _knob_settings(64, 256, 0.95),
        "AEGym/SoundMatch-Medium-v1": _knob_settings(100, 200, 0.97),
        "AEGym/SoundMatch-Full-v1": _knob_settings(100, 200, 0.97),
        "AEGym/SoundMatchLive-v1": _knob_settings(64, 256, 0.95),
        "AEGym/SchedulerGains-v1": MappingProxyType(
            {
                "ppo": AlgoSettings(8, _ppo(20, 80, 0.9)),
                "shaped_ppo": AlgoSettings(8, _ppo(20, 80, 0.9), _SHAPING_SCHED),
                "a2c": AlgoSettings(8, _a2c(5, 0.9)),
                "sac": AlgoSettings(4, _sac(0.9, 200, 1)),
            }
        ),
    }
)

#: Reference step (normalized knob units) of the AE baseline on knob envs.
AE_ALPHA0 = 0.05

#: The AE law's constants for the AE baseline on the tracking env (SoundMatchLive):
#: momentum fixed at 0.5. The default (μ0 = 0.9, nudged up while the reward improves)
#: averages the gradient over ~10 steps, and the target glides every step, so the
#: moves lag in the wrong direction. Measured over 64 steps, seeds 1–4 (the default
#: then μ = 0.5): returns −20.0 / −26.8 / −39.7 / −38.4 (mean −31.2) vs +19.4 / −14.9
#: / +24.1 / −36.8 (mean −2.1); static −40.3. The episodic envs keep the defaults.
#: No local tests there either: the target glides every step, so a probe judged
#: against this window's distance is stale by the next one.
AE_TRACKING_LAW = AEConfig(momentum0=0.5, momentum_step=0.0, n_probes=0)

#: Where ``python -m agents tune-ae --write`` stores the tuned AE law per env kind.
#: Entries under its ``"rejected"`` key are searches that did not validate on held-out
#: *train* episodes and are not used (SchedulerGains: the search's gain did not
#: replicate on 96 other train episodes, so its ``ae`` baseline keeps the defaults).
AE_TUNED_PATH = Path(__file__).with_name("ae_law.json")
#: Env kinds of the AE baseline: SoundMatch tiers (tuned on SoundMatch-Easy-v1's
#: train set), the tracking env (:data:`AE_TRACKING_LAW`), SchedulerGains.
AE_KINDS: tuple[str, ...] = ("sound_match", "live", "scheduler")


@dataclass(frozen=True)
class AELawSettings:
    """The AE baseline's constants on one kind of env.

    :param config: the law's constants.
    :param alpha0: reference step of the knob envs' gradient policy (None: :data:`AE_ALPHA0`).
    :param search: how they were found (the tuning run's record), None for defaults.
    """

    config: AEConfig
    alpha0: float | None = None
    search: dict[str, Any] | None = None


def load_ae_tuning(path: Path = AE_TUNED_PATH) -> dict[str, Any]:
    """The tuning file's contents (``{}`` when there is none)."""
    if not path.exists():
        return {}
    return json.loads(path.read_text())


def ae_law_settings(kind: str, path: Path = AE_TUNED_PATH) -> AELawSettings:
    """The AE baseline's settings for an env kind (one of :data:`AE_KINDS`): the tuned
    ones from ``ae_law.json`` where tuned, else the defaults (``AEConfig()``); the
    tracking env always uses :data:`AE_TRACKING_LAW`.

    :raises ValueError: unknown kind.
    """
    if kind not in AE_KINDS:
        raise ValueError(f"unknown AE env kind {kind!r}; allowed: {', '.join(AE_KINDS)}")
    if kind == "live":
        return AELawSettings(AE_TRACKING_LAW)
    entry = load_ae_tuning(path).get(kind)
    if entry is None:
        return AELawSettings(AEConfig())
    return AELawSettings(
        AEConfig.from_dict({**AEConfig().to_dict(), **entry["config"]}),
        entry.get("alpha0"),
        entry.get("search"),
    )


#: Candidate constant learning rates of the Adam baseline (units of α0).
ADAM_LR_GRID: tuple[float, ...] = (0.03125, 0.0625, 0.125, 0.25, 0.5, 1.0, 2.0)
#: The tuned one (see the module docstring).
ADAM_LR_MULTIPLIER = 0.125
#: Mean final train distance per multiplier from the tuning run (32 episodes each).
#: (SchedulerGains; the knob envs' Adam is ADAM_KNOB_LR below.)
ADAM_TUNING_RESULT: dict[float, float] = {
    0.03125: 2.766,
    0.0625: 2.565,
    0.125: 2.472,
    0.25: 2.563,
    0.5: 2.626,
    1.0: 2.800,
    2.0: 2.893,
}

#: Candidate constant step sizes (normalized knob units) of the knob envs' Adam
#: baseline (:class:`agents.baselines.AdamKnobBaseline`).
ADAM_KNOB_LR_GRID: tuple[float, ...] = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2)
#: The tuned one: the best of the grid by mean final distance on SoundMatch-Easy-v1's
#: *train* set (48 targets spread evenly × seeds 0 and 1 = 96 episodes, default
#: settings: 0.5 s notes, 50 steps; 126 s on the shared 2-core box) —
#: :func:`agents.baselines.tune_adam_knob_lr`, rerun with ``python -m agents tune-adam
#: --env-id AEGym/SoundMatch-Easy-v1 --n-targets 48 --seeds 0 1 --lrs 0.02 0.05 0.1
#: 0.2``. The top of the grid is flat: 0.05, 0.1 and 0.2 end within 5 % of each other
#: (above ``max_move`` = 0.1 Adam's first steps saturate the move, so larger rates act
#: alike); 0.1 and 0.2 succeed more often (81 %, 79 % vs 72 %) but end slightly farther
#: on average. An earlier run on 12 episodes had picked 0.2 (0.554 vs 0.635 at 0.05):
#: that gap was noise.
ADAM_KNOB_LR = 0.05
#: Mean final train distance (success rate) per step size from that run.
ADAM_KNOB_TUNING_RESULT: dict[float, tuple[float, float]] = {
    0.02: (1.052, 0.552),
    0.05: (0.668, 0.719),
    0.1: (0.698, 0.812),
    0.2: (0.682, 0.792),
}


def get_settings(env_id: str, algo: str) -> AlgoSettings:
    """The settings of ``algo`` on ``env_id``.

    :param env_id: a supported env id.
    :param algo: a registered algorithm (:data:`agents.common.registry.ALGOS`).
    :raises ValueError: unknown env id or algorithm.
    """
    return HYPERPARAMS[check_env_id(env_id)][check_algo(algo)]
