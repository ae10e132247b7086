"""Evaluation episodes: which ones (targets × seeds), their reset seeds, and playing them.

Every agent plays the same episodes: each :class:`EpisodeSpec` (target, seed) is reset
with ``options={"target_index": t}`` and the seed :func:`episode_seed` (so free knobs
start at the same place for every agent). :func:`run_episodes` plays a list of them
batched in a VecEnv and records, per episode, the metrics of :data:`METRICS`; the
success threshold is read from the env's config (:func:`agents.common.envs.success_distance`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import gymnasium as gym
import numpy as np
from stable_baselines3.common.vec_env import VecEnv

from agents.common.envs import make_env, reset_episodes, success_distance
from agents.common.type_aliases import PredictPolicy

#: The metrics of every agent, in table order.
METRICS: tuple[str, ...] = (
    "return",
    "final_distance",
    "success",
    "steps_to_threshold",
    "violations",
    "knob_error",
)

Agent = PredictPolicy


@dataclass(frozen=True)
class EpisodeSpec:
    """One evaluation episode: a target of the set and a seed.

    :param target_index: index into the env's target set.
    :param seed: the evaluation seed (the reset seed is :func:`episode_seed`).
    """

    target_index: int
    seed: int


@dataclass
class EpisodeRecord:
    """What happened in one episode.

    :param target_index: target played.
    :param seed: evaluation seed.
    :param episode_return: undiscounted return.
    :param length: steps taken.
    :param final_distance: distance after the last step.
    :param success: success flag at the end.
    :param steps_to_threshold: first step with distance below the env's success
        distance (censored at the limit).
    :param violations: steps with a safety violation (``info["safety_violation"]``),
        plus divergences.
    :param distances: distance at reset and after every step.
    :param run: which training run of the agent played it (0 unless an agent pools
        several runs of one algorithm).
    :param knob_error: mean absolute free-knob error against the truth at the end
        (``info["knob_error"]``, normalized units); NaN where the truth is unknown.
    :param spend: what the agent spent on this episode beyond the env steps (baselines:
        ``renders`` / ``gradient_evals`` / ``hindsight_episodes``, read from
        ``agent.spent_per_row`` at the episode's reset and right after its last step, so
        the auto-reset episode that follows and padded rows are not counted); empty for
        agents that count nothing (trained models).
    :param normalized_score: ``(d_static − d) / (d_static − d_oracle)`` on final
        distance, filled by :mod:`agents.evaluate` when the oracle played the same
        episode (:func:`agents.evaluate.add_normalized_scores`); NaN otherwise.
    """

    target_index: int
    seed: int
    episode_return: float
    length: int
    final_distance: float
    success: bool
    steps_to_threshold: int
    violations: int
    distances: list[float]
    run: int = 0
    knob_error: float = math.nan
    spend: dict[str, int] = field(default_factory=dict)
    normalized_score: float = math.nan

    def metric(self, name: str) -> float:
        """Value of one of :data:`METRICS`, ``"normalized_score"`` or ``"mean_distance"``.

        :param name: metric name.
        """
        return {
            "return": self.episode_return,
            "final_distance": self.final_distance,
            "success": float(self.success),
            "steps_to_threshold": float(self.steps_to_threshold),
            "violations": float(self.violations),
            "knob_error": self.knob_error,
            "normalized_score": self.normalized_score,
            "mean_distance": self.mean_distance,
        }[name]

    @property
    def mean_distance(self) -> float:
        """Mean distance after each step (``distances[1:]``; NaN without a step): the
        tracking metric of SoundMatchLive, whose target moves every step."""
        after = self.distances[1:]
        return float(np.mean(after)) if after else math.nan


def episode_seed(seed: int, target_index: int) -> int:
    """Reset seed of the episode (target ``target_index``, evaluation seed ``seed``).

    :param seed: evaluation seed.
    :param target_index: target index.
    """
    return int(np.random.SeedSequence([seed, target_index, 7919]).generate_state(1)[0])


def n_targets_in(env_id: str, target_set: str, env_kwargs: dict[str, Any]) -> int:
    """Size of the instance set ``target_set`` for ``env_id``.

    :param env_id: env id.
    :param target_set: set name or WAV path.
    :param env_kwargs: env keyword arguments.

    The env is built to count: a tier reduces a named set to the target kinds it
    accepts (SoundMatch-Easy-v1 keeps the in-domain targets of ``"test"``).
    """
    env = make_env(env_id, **{**env_kwargs, "target": target_set})
    try:
        return len(env.unwrapped.core.targets)  # type: ignore[attr-defined]
    finally:
        env.close()


def select_targets(
    env_id: str, target_set: str, n_targets: int | None, env_kwargs: dict[str, Any]
) -> list[int]:
    """``n_targets`` indices spread evenly over the set (all when None), so a subset
    keeps the set's mix of in-domain and out-of-domain targets.

    :param env_id: env id.
    :param target_set: set name or WAV path.
    :param n_targets: how many (None: all).
    :param env_kwargs: env keyword arguments.
    :raises ValueError: ``n_targets`` not a positive integer.
    """
    total = n_targets_in(env_id, target_set, env_kwargs)
    if n_targets is None or n_targets >= total:
        return list(range(total))
    if isinstance(n_targets, bool) or not isinstance(n_targets, int) or n_targets <= 0:
        raise ValueError(f"n_targets must be a positive integer or None, got {n_targets!r}")
    return sorted({round(float(x)) for x in np.linspace(0, total - 1, n_targets)})


def _violations(info: dict[str, Any]) -> int:
    """1 for a step with a safety violation (``info["safety_violation"]``: a loudness or
    slew penalty above the reward's tolerance), plus 1 for a divergence."""
    unsafe = bool(info.get("safety_violation", False))
    return int(unsafe) + int(bool(info.get("diverged", False)))


def run_episodes(
    venv: VecEnv,
    agent: Agent,
    specs: Sequence[EpisodeSpec],
    deterministic: bool = True,
    limit: int | None = None,
    threshold: float | None = None,
) -> list[EpisodeRecord]:
    """Play every episode of ``specs`` once with ``agent`` in ``venv`` (batches of
    ``venv.num_envs`` side by side; a short last batch is padded and the padding ignored).

    :param venv: a VecEnv of the env (native or DummyVecEnv).
    :param agent: the agent (it must act on ``venv``: the AE baseline reads its plant).
    :param specs: episodes to play.
    :param deterministic: passed to ``predict``.
    :param limit: censoring value of ``steps_to_threshold`` (None: longest episode).
    :param threshold: success distance of ``steps_to_threshold`` and of ``success``
        where the env gives no ``is_success`` (None: the env's, :func:`success_distance`).

    An agent with ``spent_per_row(n)`` (the baselines) has each record's ``spend`` set
    to what it spent on that row between the episode's reset and its last step.
    """
    if threshold is None:
        threshold = success_distance(venv)
    n = venv.num_envs
    records: list[EpisodeRecord] = []
    for start in range(0, len(specs), n):
        batch = list(specs[start : start + n])
        padded = batch + [batch[-1]] * (n - len(batch))
        obs = reset_episodes(
            venv,
            [episode_seed(s.seed, s.target_index) for s in padded],
            [s.target_index for s in padded],
        )
        if hasattr(agent, "reset"):
            agent.reset()  # type: ignore[union-attr]
        counts = getattr(agent, "spent_per_row", None)
        spent0 = counts(n) if counts is not None else {}
        spent: dict[int, dict[str, int]] = {}
        starts = np.ones(n, dtype=bool)
        alive = np.zeros(n, dtype=bool)
        alive[: len(batch)] = True
        returns = np.zeros(n)
        lengths = np.zeros(n, dtype=int)
        violations = np.zeros(n, dtype=int)
        first_hit = np.full(n, -1)
        distances = [[float(venv.reset_infos[i]["distance"])] for i in range(n)]
        for i in range(n):
            if distances[i][0] < threshold:
                first_hit[i] = 0
        finals: dict[int, tuple[float, bool]] = {}
        knob_errors = np.full(n, math.nan)
        while alive.any():
            actions, _ = agent.predict(obs, episode_start=starts, deterministic=deterministic)
            obs, rewards, dones, infos = venv.step(actions)
            starts = np.asarray(dones, dtype=bool)
            for i in np.flatnonzero(alive):
                info = infos[i]
                returns[i] += float(rewards[i])
                lengths[i] += 1
                violations[i] += _violations(info)
                d = float(info.get("distance", math.nan))
                distances[i].append(d)
                if first_hit[i] < 0 and d < threshold:
                    first_hit[i] = lengths[i]
                if dones[i]:
                    alive[i] = False
                    finals[i] = (d, bool(info.get("is_success", d < threshold)))
                    knob_errors[i] = float(info.get("knob_error", math.nan))
                    if counts is not None:
                        now = counts(n)
                        spent[i] = {k: int(now[k][i] - spent0[k][i]) for k in now}
        cap = limit if limit is not None else int(lengths.max())
        for i, spec in enumerate(batch):
            d, ok = finals[i]
            records.append(
                EpisodeRecord(
                    spec.target_index,
                    spec.seed,
                    float(returns[i]),
                    int(lengths[i]),
                    d,
                    ok,
                    int(first_hit[i]) if first_hit[i] >= 0 else cap,
                    int(violations[i]),
                    distances[i],
                    knob_error=float(knob_errors[i]),
                    spend=spent.get(i, {}),
                )
            )
    return records


def replay_episode(
    env: gym.Env, agent: Agent, spec: EpisodeSpec, deterministic: bool = True
) -> float:
    """Play one episode in a single env (for images and WAV files), leaving ``env`` at
    the episode's end; returns the final distance.

    :param env: a single env (a rendering one for images).
    :param agent: an agent acting on ``env`` (baselines that read the plant must be
        built on it).
    :param spec: the episode.
    :param deterministic: passed to ``predict``.
    """
    obs, info = env.reset(
        seed=episode_seed(spec.seed, spec.target_index),
        options={"target_index": spec.target_index},
    )
    start = True
    done = False
    while not done:
        action, _ = agent.predict(obs, episode_start=np.array([start]), deterministic=deterministic)
        start = False
        obs, _, terminated, truncated, info = env.step(action)
        done = terminated or truncated
    return float(info["distance"])
