"""Evaluate agents — baselines by name and saved models by path — on the same episodes.

``python -m agents evaluate --env-id AEGym/SoundMatch-Easy-v1 --agents ae static random
runs/.../model.zip --n-targets 24 --seeds 0 1``

``python -m agents evaluate RUN_DIR`` evaluates a training run from its folder alone: the
env id, env kwargs and algorithm come from the folder's ``config.json``, the model is
``model.zip`` (or the newest checkpoint if training was interrupted), and it plays
against ``--agents`` (by default the ae, static and random baselines). A run folder can
also be given in ``--agents``.

Every agent plays the same episodes (:mod:`agents.common.episodes`): each (target, seed)
pair is reset with ``options={"target_index": t}`` and the seed ``episode_seed(seed, t)``
(so free knobs start at the same place for every agent). Several training runs of one
algorithm (seeds) are pooled into one agent by joining them with commas
(``runs/ppo_s0,runs/ppo_s1,runs/ppo_s2``); each run plays every episode. Per agent the
command reports (:mod:`agents.common.statistics`) the mean and the IQM with a 95 %
bootstrap confidence interval that resamples *targets* — all episodes of a target
together, since they are correlated — and, for pooled runs, training runs
independently (2,000 resamples, percentile method); success rates get an exact
Clopper–Pearson interval. The metrics:

* ``return`` — the undiscounted episode return;
* ``final_distance`` — the spectral distance after the last step (lower is better);
* ``success`` — ``info["is_success"]`` at the end (for the live env, which has no
  success flag: final distance below the success distance);
* ``steps_to_threshold`` — the first step with distance below the success distance (0
  if the start is already there); episodes that never get there count as the episode
  limit;
* ``violations`` — safety violations per episode: steps whose loudness or slew
  penalty exceeds the reward's ``violation_tolerance`` (``info["safety_violation"]``;
  float rounding at a limit is no violation), plus divergences (``info["diverged"]``,
  SchedulerGains).

Normalized score (rliable style): where the ``oracle`` baseline plays (named in
``--agents``, or added by ``--normalize``), every episode of every agent gets
``normalized_score = (zero − x) / (zero − one)`` (:func:`normalized_score`) on the env's
metric, with two reference results of the *same* (target, seed) episode
(:data:`NORMALIZATION`):

* SoundMatch tiers (Easy/Medium/Full): final distance; 0 = the episode's start distance
  (``distances[0]``: the static baseline never moves and every agent starts the
  episode at the same place), 1 = the oracle's final distance;
* SoundMatchLive: mean distance over the episode's steps (the target glides, so the
  start says nothing about where doing nothing ends); 0 = the static baseline's, 1 =
  the tracking oracle's;
* SchedulerGains: final distance; 0 = the static baseline's (the default gains held
  constant), 1 = the hindsight oracle's (the best schedule of its grid).

A reference baseline that is not in ``--agents`` is added by ``--normalize``; with the
oracle named but the zero reference missing (and no ``--normalize``) the score is
skipped and ``normalization["skipped"]`` says why. Episodes whose reference gain
``zero − one`` is below :data:`MIN_ORACLE_GAIN` (doing nothing is already as good as the
oracle) have no scale and are dropped from the score (NaN in the record, ``null`` in
``results.json``, counted in ``normalization["dropped"]``). The table gets a
"normalized score IQM ↑" column (IQM with the target-clustered bootstrap CI), and each
scored agent a performance profile (:func:`performance_profile`: the fraction of
episodes with score ≥ τ, τ in 0, 0.05, …, 1, with clustered bands; ``results.json``'s
``performance_profile``, a plot in the report). Where the oracle cannot run (targets
without true knobs) ``--normalize`` skips the score and says why in
``normalization["skipped"]`` — no column then.

Spend: baselines count what they spend beyond the env step (renders, gradient
evaluations, hindsight replays) per episode (:attr:`EpisodeRecord.spend`; the auto-reset
episodes of rows that finished early and padded rows are not counted). ``results.json``
gives, per baseline, ``budget["spent"]`` (total over the recorded episodes) and
``budget["spent_per_episode"]`` (mean); the table's budget column shows the mean.

Every pair of agents is also compared on the same episodes (:func:`compare`): the
mean paired difference of final distance and of return with a target-clustered CI, the
probability of improvement P(A better than B) with its CI, and a verdict — "A better"
only when the paired CI of the final-distance difference excludes 0.

The success distance and the episode limit are read from the created env's config
(:func:`agents.common.envs.success_distance`), so an env kwarg that changes them is
honoured; both are recorded in ``results.json`` with the env's resolved config.

Outputs (see :mod:`agents.report`): ``results.json``, ``results.md``, PNG plots, WAV
renders of target vs result and one self-contained ``report.html``.
"""

from __future__ import annotations

import json
import math
import re
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any

import torch
from stable_baselines3.common.base_class import BaseAlgorithm
from stable_baselines3.common.vec_env import VecEnv

import aegym
from agents.baselines import BASELINE_NAMES, check_baseline, make_baseline
from agents.common.checks import check_count
from agents.common.cli import parse_args
from agents.common.envs import (
    check_env_id,
    check_env_kwargs,
    env_config,
    episode_limit,
    make_vec_env,
    success_distance,
)
from agents.common.episodes import (
    METRICS,
    Agent,
    EpisodeRecord,
    EpisodeSpec,
    run_episodes,
    select_targets,
)
from agents.common.registry import ALGOS, algo_class
from agents.common.runs import (
    algo_of_model_data,
    config_to_dict,
    json_ready,
    read_model_data,
    read_run_config,
    run_dir_of,
    run_model_path,
)
from agents.common.statistics import (
    Comparison,
    MetricSummary,
    PerformanceProfile,
    compare,
    normalized_score,
    performance_profile,
    success_summary,
    summarize,
)
from agents.report import format_comparisons, format_table, write_report

#: Env evaluated on when neither ``env_id`` nor a run folder says.
DEFAULT_ENV_ID = "AEGym/SoundMatch-Easy-v1"

#: Episodes whose oracle gain (start distance − oracle's final distance) is below this
#: have no scale: they are dropped from the normalized score.
MIN_ORACLE_GAIN = 1e-6


@dataclass(frozen=True)
class NormalizationSpec:
    """How an env's episodes get a normalized score (:func:`normalized_score`).

    :param metric: the per-episode metric (lower is better; an
        :meth:`EpisodeRecord.metric` name: ``"final_distance"`` or ``"mean_distance"``).
    :param zero: the result scored 0: ``"start"`` (the episode's start distance) or the
        name of a baseline played on the same episodes.
    :param one: the baseline scored 1.
    """

    metric: str
    zero: str
    one: str = "oracle"


#: Per env id, how its episodes are normalized (see the module docstring).
NORMALIZATION: dict[str, NormalizationSpec] = {
    "AEGym/SoundMatch-Easy-v1": NormalizationSpec("final_distance", "start"),
    "AEGym/SoundMatch-Medium-v1": NormalizationSpec("final_distance", "start"),
    "AEGym/SoundMatch-Full-v1": NormalizationSpec("final_distance", "start"),
    "AEGym/SoundMatchLive-v1": NormalizationSpec("mean_distance", "static"),
    "AEGym/SchedulerGains-v1": NormalizationSpec("final_distance", "static"),
}


@dataclass
class EvalArgs:
    """Evaluate agents (baselines by name, saved models by path) on the same episodes."""

    env_id: str | None = None
    """environment id (None: the RUN_DIR's, else AEGym/SoundMatch-Easy-v1)"""
    agents: list[str] = field(default_factory=lambda: ["ae", "static", "random"])
    """agents: baseline names (ae, random, static, adam, oracle, random_search, cmaes,
    nearest), run folders and/or model .zip
    paths ("algo:path" checks the file holds that algorithm); runs joined by commas
    ("runs/a,runs/b") are pooled as training seeds of one agent; with RUN_DIR, the
    run's agent plays first"""
    target_set: str = "test"
    """instance set to evaluate on: test, train, or a WAV path/folder"""
    n_targets: int | None = None
    """number of targets, spread evenly over the set (None: all)"""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """episode seeds; every target is played once per seed"""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """env keyword arguments as a JSON object (must match what models were trained with)"""
    output_dir: str = "eval"
    """folder for results.json/.md, plots, WAVs and report.html"""
    n_showcase: int = 2
    """episodes rendered to spectrogram images and WAV files per agent"""
    max_parallel: int = 64
    """most episodes run side by side in one vector env"""
    native_vec: bool = True
    """use aegym's native batched vector env when available"""
    runs: list[str] = field(default_factory=list)
    """extra run folders whose training logs to plot as learning curves"""
    deterministic: bool = True
    """act with the mean action of trained models"""
    torch_threads: int = 1
    """torch intra-op threads"""
    normalize: bool = False
    """also play the oracle baseline (if not in agents) so every episode gets a
    normalized score (SoundMatch note envs with true knobs only; skipped otherwise)"""
    run_dir: str | None = field(default=None, metadata={"positional": True})
    """a training run folder to evaluate: its env id, env kwargs and model are read from
    it (explicit --env-id/--env-kwargs override them)"""


@dataclass
class AgentResult:
    """One agent's evaluation.

    :param label: display name.
    :param source: baseline name or model path.
    :param algo: algorithm (``"baseline"`` for baselines).
    :param episodes: per-episode records, in episode order.
    :param metrics: summaries of :data:`METRICS`.
    :param wall_s: seconds spent playing the episodes.
    :param run_dir: training run folder of a model, if known (the first run's, when
        several runs are pooled).
    :param n_runs: training runs pooled into this agent (1 for baselines).
    :param cost: baselines only: privileged access, declared budget and what was spent
        (:meth:`agents.baselines.BaselinePolicy.cost_summary`); None for models.
    :param profile: performance profile of the normalized score (None: not scored).
    """

    label: str
    source: str
    algo: str
    episodes: list[EpisodeRecord]
    metrics: dict[str, MetricSummary]
    wall_s: float
    run_dir: str | None = None
    n_runs: int = 1
    cost: dict[str, Any] | None = None
    profile: PerformanceProfile | None = None


@dataclass
class EvalResult:
    """Everything :func:`evaluate` measured (written by :func:`agents.report.write_report`).

    :param env_id: env evaluated on.
    :param target_set: instance set.
    :param target_indices: targets played.
    :param target_names: their names.
    :param seeds: evaluation seeds.
    :param env_kwargs: env keyword arguments.
    :param agents: per-agent results, in the order given.
    :param episode_limit: step limit of an episode (censoring of steps_to_threshold).
    :param success_distance: the env's success threshold (from its config).
    :param env_config: the env's resolved config (every setting, defaults included).
    :param showcase: per agent label, rendered episodes: ``{"episode", "image",
        "result_wav", "target_wav", "final_distance"}`` (filled by the report).
    :param wall_s: total seconds.
    :param comparisons: every pair of agents compared on the same episodes:
        ``{"a", "b", "final_distance": Comparison, "return": Comparison}``.
    :param normalization: how the normalized score was made (``{"reference": "oracle",
        "zero", "metric", "min_oracle_gain", "scored", "dropped"}``), or
        ``{"skipped": reason}``; empty when it was not asked for (no oracle, no
        ``--normalize``).
    """

    env_id: str
    target_set: str
    target_indices: list[int]
    target_names: list[str]
    seeds: list[int]
    env_kwargs: dict[str, Any]
    agents: list[AgentResult]
    episode_limit: int
    success_distance: float
    env_config: dict[str, Any] = field(default_factory=dict)
    showcase: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    wall_s: float = 0.0
    comparisons: list[dict[str, Any]] = field(default_factory=list)
    normalization: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``results.json``)."""
        return {
            "env_id": self.env_id,
            "target_set": self.target_set,
            "target_indices": self.target_indices,
            "target_names": self.target_names,
            "seeds": self.seeds,
            "env_kwargs": json_ready(self.env_kwargs),
            "episode_limit": self.episode_limit,
            "success_distance": self.success_distance,
            "env_config": self.env_config,
            "wall_s": self.wall_s,
            "agents": [
                {
                    "label": a.label,
                    "source": a.source,
                    "algo": a.algo,
                    "run_dir": a.run_dir,
                    "wall_s": a.wall_s,
                    "n_runs": a.n_runs,
                    "privileged": None if a.cost is None else a.cost["privileged"],
                    "budget": None if a.cost is None else a.cost,
                    "metrics": {k: asdict(v) for k, v in a.metrics.items()},
                    "performance_profile": None if a.profile is None else asdict(a.profile),
                    "episodes": [_episode_dict(e) for e in a.episodes],
                }
                for a in self.agents
            ],
            "comparisons": [
                {k: asdict(v) if isinstance(v, Comparison) else v for k, v in c.items()}
                for c in self.comparisons
            ],
            "normalization": self.normalization,
            "showcase": self.showcase,
        }


def _episode_dict(record: EpisodeRecord) -> dict[str, Any]:
    out = asdict(record)
    if math.isnan(record.normalized_score):
        out["normalized_score"] = None  # no oracle for this episode, or dropped
    return out


def _not_found(spec: str) -> FileNotFoundError:
    return FileNotFoundError(
        f"agent {spec!r} is neither a baseline ({', '.join(BASELINE_NAMES)}), a run folder "
        f"nor an existing model file"
    )


def parse_agent_spec(spec: str) -> tuple[str | None, Path]:
    """Split a model agent ``path`` or ``algo:path`` into (algorithm or None, path).

    :param spec: the agent as given.
    :raises ValueError: a prefix that is no algorithm (naming the allowed ones).
    """
    if Path(spec).exists():
        return None, Path(spec)
    head, sep, tail = spec.partition(":")
    if sep and head in ALGOS:
        return head, Path(tail)
    # A word before ':' (not a one-letter drive) was meant as an algorithm.
    if sep and re.fullmatch(r"[A-Za-z_][\w-]+", head):
        raise ValueError(
            f"agent {spec!r}: unknown algorithm prefix {head!r}; allowed: "
            f"{', '.join(ALGOS)} (or no prefix: the algorithm is read from the file)"
        )
    return None, Path(spec)


def inspect_agent(spec: str) -> tuple[str, Path]:
    """Algorithm and model file of a model agent (a path, ``algo:path`` or a run folder),
    checked without loading the model.

    :param spec: the agent as given.
    :return: ``(algo, model file)``.
    :raises FileNotFoundError: no such file, or a run folder without a model.
    :raises ValueError: unknown prefix, not an SB3 model zip, or a prefix that does not
        match the algorithm the file holds.
    """
    prefix, path = parse_agent_spec(spec)
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise FileNotFoundError(
                f"agent {spec!r} is a folder but not a run folder (no config.json in it)"
            )
        found = run_model_path(path)
        if found is None:
            raise FileNotFoundError(
                f"agent {spec!r}: the run folder holds no model.zip and no checkpoint "
                f"(checkpoints/step_*.zip)"
            )
        path = found
    elif not path.is_file():
        raise _not_found(spec)
    held = algo_of_model_data(read_model_data(spec, path))
    if prefix is not None and prefix != held:
        raise ValueError(
            f"agent {spec!r}: {str(path)!r} holds a {held} model, not {prefix}; use "
            f"'{held}:{path}' or drop the prefix"
        )
    return held, path


def load_model(spec: str) -> tuple[str, Path, BaseAlgorithm]:
    """Load a saved model from ``path``, ``algo:path`` or a run folder.

    :param spec: model path (optionally prefixed with the algorithm) or run folder.
    :return: ``(algo, path, model)``.
    :raises FileNotFoundError: no such file.
    :raises ValueError: unknown algorithm prefix, a file that is no SB3 model of it.
    """
    algo, path = inspect_agent(spec)
    try:
        model = algo_class(algo).load(path, device="cpu")
    except Exception as err:
        raise ValueError(
            f"agent {spec!r}: cannot load {str(path)!r} as a {algo} model "
            f"({type(err).__name__}: {' '.join(str(err).split())})"
        ) from err
    return algo, path, model


def _check_spaces(label: str, model: BaseAlgorithm, env: VecEnv) -> None:
    if model.observation_space.shape != env.observation_space.shape:
        raise ValueError(
            f"model {label!r} expects observations of shape {model.observation_space.shape}, "
            f"the env gives {env.observation_space.shape} (train and evaluate with the "
            f"same env and env_kwargs)"
        )
    if model.action_space.shape != env.action_space.shape:
        raise ValueError(
            f"model {label!r} acts with shape {model.action_space.shape}, the env expects "
            f"{env.action_space.shape}"
        )


def resolve_args(args: EvalArgs) -> EvalArgs:
    """``args`` with the run folder (``run_dir``) applied: its env id and env kwargs
    (explicit ones win) and its agent first; ``env_id`` filled in.

    :param args: the arguments.
    :raises FileNotFoundError: ``run_dir`` is not a run folder.
    :raises ValueError: its config.json is not a run config.
    """
    env_id, env_kwargs, agents = args.env_id, dict(args.env_kwargs), list(args.agents)
    if args.run_dir is not None:
        config = read_run_config(args.run_dir)
        env_id = env_id or str(config["args"]["env_id"])
        saved = {k: v for k, v in dict(config["env_kwargs"]).items() if k != "target"}
        env_kwargs = {**saved, **env_kwargs}
        agents = [args.run_dir, *(a for a in agents if a != args.run_dir)]
    return replace(
        args, env_id=env_id or DEFAULT_ENV_ID, env_kwargs=env_kwargs, agents=agents, run_dir=None
    )


def validate_args(args: EvalArgs) -> None:
    """Check the arguments, naming the bad value and what is allowed.

    :param args: the arguments (``run_dir`` is applied first, see :func:`resolve_args`).
    :raises ValueError: bad env id, env kwargs, agent names, counts or seeds, a model
        file that is no SB3 model of its algorithm.
    :raises FileNotFoundError: a model path or run folder that does not exist.
    """
    args = resolve_args(args)
    env_id = str(args.env_id)
    check_env_id(env_id)
    check_env_kwargs(env_id, args.env_kwargs)
    if not args.agents:
        raise ValueError("agents must name at least one agent")
    if not args.seeds:
        raise ValueError("seeds must list at least one seed")
    check_count("n_showcase", args.n_showcase, 0)
    check_count("max_parallel", args.max_parallel)
    if args.n_targets is not None:
        check_count("n_targets", args.n_targets)
    for spec in args.agents:
        if spec in BASELINE_NAMES:
            check_baseline(spec, env_id)
            continue
        for part in split_agent_spec(spec):
            inspect_agent(part)


def split_agent_spec(spec: str) -> list[str]:
    """The runs of one agent: ``"a,b,c"`` (pooled training runs) -> ``["a", "b", "c"]``;
    a spec that exists as a path is never split.

    :param spec: the agent as given.
    :raises ValueError: an empty part.
    """
    if Path(spec).exists() or "," not in spec:
        return [spec]
    parts = [p.strip() for p in spec.split(",")]
    if not all(parts):
        raise ValueError(f"agent {spec!r}: an empty run between commas")
    return parts


def summarize_metrics(records: list[EpisodeRecord]) -> dict[str, MetricSummary]:
    """Per metric of :data:`METRICS`: success with a Clopper–Pearson interval, the
    others with mean, IQM and CIs clustered by target (and training run).

    :param records: the agent's episodes.
    """
    targets = [r.target_index for r in records]
    runs = [r.run for r in records]
    out: dict[str, MetricSummary] = {}
    for m in METRICS:
        values = [r.metric(m) for r in records]
        out[m] = (
            success_summary(values, runs) if m == "success" else summarize(values, targets, runs)
        )
    return out


def episode_means(agent: AgentResult, metric: str) -> dict[tuple[int, int], float]:
    """Per (target, seed): the metric, averaged over the agent's training runs."""
    acc: dict[tuple[int, int], list[float]] = {}
    for r in agent.episodes:
        acc.setdefault((r.target_index, r.seed), []).append(r.metric(metric))
    return {k: float(sum(v) / len(v)) for k, v in acc.items()}


#: Metrics compared pairwise, with their direction (higher is better?).
COMPARED: tuple[tuple[str, bool], ...] = (("final_distance", False), ("return", True))


def compare_agents(agents: list[AgentResult]) -> list[dict[str, Any]]:
    """Every pair of agents (in the given order) on their common episodes, per metric of
    :data:`COMPARED` (:func:`agents.common.statistics.compare`).

    :param agents: the evaluated agents.
    """
    out: list[dict[str, Any]] = []
    for i, a in enumerate(agents):
        for b in agents[i + 1 :]:
            entry: dict[str, Any] = {"a": a.label, "b": b.label}
            for metric, higher in COMPARED:
                xa, xb = episode_means(a, metric), episode_means(b, metric)
                keys = [k for k in xa if k in xb]
                entry[metric] = compare(
                    [xa[k] for k in keys],
                    [xb[k] for k in keys],
                    [k[0] for k in keys],
                    metric,
                    higher,
                )
            out.append(entry)
    return out


def add_normalized_scores(
    agents: list[AgentResult],
    oracle: AgentResult,
    zero: AgentResult | None = None,
    metric: str = "final_distance",
) -> dict[str, Any]:
    """Set ``normalized_score`` on every episode of ``agents`` against two references on
    the same (target, seed) episode — ``zero`` scored 0, ``oracle`` scored 1 — and add
    its summary (``metrics["normalized_score"]``) and performance profile.

    Episodes whose reference gain ``zero − one`` is below :data:`MIN_ORACLE_GAIN` are
    dropped (NaN). Agents whose every episode is dropped get no summary.

    :param agents: the evaluated agents (the references among them or not).
    :param oracle: the result scored 1.
    :param zero: the result scored 0 (None: each episode's start distance,
        ``distances[0]``).
    :param metric: the lower-is-better metric normalized (an
        :meth:`~agents.common.episodes.EpisodeRecord.metric` name).
    :return: what was done (``results.json``'s ``normalization``).
    """
    one_ref = episode_means(oracle, metric)
    zero_ref = None if zero is None else episode_means(zero, metric)

    def zero_of(r: EpisodeRecord) -> float:
        if zero_ref is None:
            return r.distances[0]
        return zero_ref.get((r.target_index, r.seed), math.nan)

    gains = [zero_of(r) - one_ref[(r.target_index, r.seed)] for r in oracle.episodes]
    dropped = sum(not g >= MIN_ORACLE_GAIN for g in gains)
    for a in agents:
        if not a.episodes:
            continue
        z = [zero_of(r) for r in a.episodes]
        o = [one_ref.get((r.target_index, r.seed), math.nan) for r in a.episodes]
        scores = normalized_score([r.metric(metric) for r in a.episodes], z, o)
        for r, z0, o1, score in zip(a.episodes, z, o, scores, strict=True):
            r.normalized_score = float(score) if z0 - o1 >= MIN_ORACLE_GAIN else math.nan
        values = [r.normalized_score for r in a.episodes]
        if any(math.isfinite(v) for v in values):
            targets, runs = [r.target_index for r in a.episodes], [r.run for r in a.episodes]
            a.metrics["normalized_score"] = summarize(values, targets, runs)
            a.profile = performance_profile(values, targets, runs=runs)
    return {
        "reference": oracle.label,
        "zero": "start distance (distances[0])" if zero is None else zero.label,
        "metric": metric,
        "min_oracle_gain": MIN_ORACLE_GAIN,
        "scored": len(gains) - dropped,
        "dropped": dropped,
    }


def spend_per_episode(cost: dict[str, Any], records: list[EpisodeRecord]) -> dict[str, Any]:
    """``cost`` with ``spent`` replaced by the total over the recorded episodes and
    ``spent_per_episode`` (mean) added (:attr:`EpisodeRecord.spend`).

    :param cost: a baseline's :meth:`~agents.baselines.BaselinePolicy.cost_summary`.
    :param records: its recorded episodes.
    """
    kinds = list(cost.get("spent", {})) or sorted({k for r in records for k in r.spend})
    total = {k: int(sum(r.spend.get(k, 0) for r in records)) for k in kinds}
    n = len(records)
    return {
        **cost,
        "spent": total,
        "spent_per_episode": {k: (v / n if n else math.nan) for k, v in total.items()},
        "n_episodes": n,
    }


def finish_result(result: EvalResult) -> EvalResult:
    """Complete an evaluation whose agents have played: normalized scores against the
    env's two references (:data:`NORMALIZATION`: the oracle as 1, the start or the
    static baseline as 0) when they played (unless ``result.normalization`` already
    says why not), and every pairwise comparison.

    :func:`evaluate` ends with it, and :mod:`agents.sweep` uses it to assemble a
    leaderboard from cells evaluated apart (so both give the same numbers).

    :param result: agents with their episodes and per-metric summaries.
    :return: ``result``, with ``normalization`` and ``comparisons`` set.
    """
    norm = NORMALIZATION.get(result.env_id)
    if norm is not None and not result.normalization:
        by_source = {a.source: a for a in result.agents if a.algo == "baseline"}
        oracle = by_source.get(norm.one)
        zero = None if norm.zero == "start" else by_source.get(norm.zero)
        if oracle is not None and (zero is not None or norm.zero == "start"):
            result.normalization = add_normalized_scores(result.agents, oracle, zero, norm.metric)
    result.comparisons = compare_agents(result.agents)
    return result


def episode_from_dict(data: dict[str, Any]) -> EpisodeRecord:
    """An :class:`EpisodeRecord` from its ``results.json`` form (``null`` scores: NaN).

    :param data: one entry of an agent's ``episodes`` in ``results.json``.
    """
    known = {f.name for f in fields(EpisodeRecord)}
    values = {k: v for k, v in data.items() if k in known}
    for key in ("normalized_score", "knob_error"):
        if values.get(key) is None:
            values[key] = math.nan
    return EpisodeRecord(**values)


def agent_from_dict(data: dict[str, Any]) -> AgentResult:
    """An :class:`AgentResult` from its ``results.json`` form, with its metrics
    recomputed from the episodes (:func:`summarize_metrics`; the normalized score is
    :func:`finish_result`'s to add).

    :param data: one entry of ``results.json``'s ``agents``.
    """
    episodes = [episode_from_dict(e) for e in data["episodes"]]
    for e in episodes:
        e.normalized_score = math.nan
    return AgentResult(
        str(data["label"]),
        str(data["source"]),
        str(data["algo"]),
        episodes,
        summarize_metrics(episodes),
        float(data["wall_s"]),
        data.get("run_dir"),
        int(data.get("n_runs", 1)),
        data.get("budget"),
    )


def _unique(label: str, taken: set[str]) -> str:
    out, k = label, 2
    while out in taken:
        out, k = f"{label}-{k}", k + 1
    taken.add(out)
    return out


def evaluate(args: EvalArgs, write: bool = True) -> EvalResult:
    """Evaluate every agent on the same episodes; optionally write the report.

    :param args: the arguments (validated here).
    :param write: write results.json/.md, plots, WAVs and report.html to ``output_dir``.
    :raises ValueError: bad arguments.
    :raises FileNotFoundError: a missing model file.
    """
    args = resolve_args(args)
    validate_args(args)
    env_id = str(args.env_id)
    t0 = time.perf_counter()
    torch.set_num_threads(args.torch_threads)
    aegym.register_envs()
    env_kwargs = {**args.env_kwargs, "target": args.target_set}
    indices = select_targets(env_id, args.target_set, args.n_targets, env_kwargs)
    specs = [EpisodeSpec(t, s) for s in args.seeds for t in indices]
    n_par = min(len(specs), args.max_parallel)
    venv = make_vec_env(env_id, n_par, seed=0, native=args.native_vec, **env_kwargs)
    config = env_config(venv)
    limit = episode_limit(env_id, config)
    threshold = success_distance(venv)
    results: list[AgentResult] = []
    taken: set[str] = set()
    loaded: dict[str, tuple[str, Agent, str | None]] = {}
    normalization: dict[str, Any] = {}
    playing = list(args.agents)
    norm = NORMALIZATION.get(env_id)
    refs = () if norm is None else tuple(n for n in (norm.one, norm.zero) if n != "start")
    auto = [n for n in refs if args.normalize and n not in playing]
    if norm is None and (args.normalize or "oracle" in playing):
        normalization = {"skipped": f"no normalized score is defined for {env_id}"}
        auto = []
    elif norm is not None and "oracle" in playing and not args.normalize:
        missing = [n for n in refs if n not in playing]
        if missing:
            normalization = {
                "skipped": f"the normalized score on {env_id} needs the {missing[0]!r} "
                f"baseline on the same episodes (add it to --agents, or --normalize)"
            }
    playing += auto
    try:
        for spec in playing:
            t_agent = time.perf_counter()
            if spec in BASELINE_NAMES:
                try:
                    agent: Agent = make_baseline(spec, venv, seed=0)
                except ValueError as err:
                    if not (spec in auto and spec == "oracle"):
                        raise
                    normalization = {"skipped": f"the oracle cannot run: {err}"}
                    continue
                algo, source, run_dir = "baseline", spec, None
                label = _unique(spec, taken)
            else:
                parts = split_agent_spec(spec)
                models = [load_model(p) for p in parts]
                algos = {m[0] for m in models}
                if len(algos) > 1:
                    raise ValueError(
                        f"agent {spec!r} pools runs of different algorithms "
                        f"({', '.join(sorted(algos))}); pool only seeds of one algorithm"
                    )
                algo, path, model = models[0]
                for part, (_, _, m) in zip(parts, models, strict=True):
                    _check_spaces(part, m, venv)
                agent, source = model, ",".join(str(m[1]) for m in models)
                rd = run_dir_of(path)
                run_dir = str(rd) if rd is not None else None
                # A second model of the same algorithm is told apart by its run folder.
                label = algo if algo not in taken else f"{algo}:{(rd or path).name}"
                label = _unique(label, taken)
            n_runs = 1 if spec in BASELINE_NAMES else len(models)
            records: list[EpisodeRecord] = []
            for k in range(n_runs):
                player = agent if spec in BASELINE_NAMES else models[k][2]
                played = run_episodes(venv, player, specs, args.deterministic, limit, threshold)
                records += [replace(r, run=k) for r in played]
            metrics = summarize_metrics(records)
            cost = agent.cost_summary() if hasattr(agent, "cost_summary") else None
            if cost is not None:
                cost = spend_per_episode(cost, records)
            results.append(
                AgentResult(
                    label,
                    source,
                    algo,
                    records,
                    metrics,
                    time.perf_counter() - t_agent,
                    run_dir,
                    n_runs,
                    cost,
                )
            )
            loaded[label] = (spec, agent, run_dir)
        names = [_target_name(venv, i) for i in indices]
    finally:
        venv.close()
    result = finish_result(
        EvalResult(
            env_id,
            args.target_set,
            indices,
            names,
            list(args.seeds),
            env_kwargs,
            results,
            limit,
            threshold,
            config_to_dict(config),
            normalization=normalization,
        )
    )
    if write:
        showcase = specs[: args.n_showcase]
        write_report(result, Path(args.output_dir), showcase, loaded, args.runs)
    result.wall_s = time.perf_counter() - t0
    if write:
        (Path(args.output_dir) / "results.json").write_text(json.dumps(result.to_dict(), indent=1))
    return result


def _target_name(venv: VecEnv, index: int) -> str:
    inner = venv.unwrapped
    core = getattr(inner, "core", None)
    if core is None:
        core = inner.envs[0].unwrapped.core  # type: ignore[attr-defined]
    return str(core.targets[index].name)


def main(argv: list[str] | None = None) -> int:
    """``python -m agents evaluate [RUN_DIR] ...``: evaluate, print the table, write the
    report. Bad arguments print one ``error: ...`` line and return 2 (no traceback).

    :param argv: command-line words (None: ``sys.argv``).
    """
    args = parse_args(EvalArgs, argv, prog="python -m agents evaluate")
    try:
        result = evaluate(args)
    except (ValueError, OSError) as err:
        print(f"error: {err}")
        return 2
    print(format_table(result))
    if result.comparisons:
        print()
        print(format_comparisons(result))
    print(f"\nreport: {Path(args.output_dir) / 'report.html'} ({result.wall_s:.1f}s)")
    return 0
