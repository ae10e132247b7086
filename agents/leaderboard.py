"""``python -m agents leaderboard``: every applicable baseline (and trained runs) per tier,
on the same episodes, one table per tier and a "who wins" sentence from paired tests.

``python -m agents leaderboard --tiers easy medium full full-ood live scheduler
--n-targets 12 --seeds 0 --runs runs/ppo_s0 runs/ppo_s1 runs/ppo_s2 --out bench/leaderboard``

A tier (:data:`TIERS`) is an env id, env keyword arguments and whether its targets are
in-domain (true knobs exist: the oracle plays, every episode gets a normalized score,
success rates are shown). Each tier is one :func:`agents.evaluate.evaluate` call — the
same episodes (targets × seeds) for every agent, written to ``OUT/<tier>/`` with its
``results.json`` and ``report.html`` — so the statistics are those of the evaluation:

* **normalized score** IQM with its target-clustered bootstrap CI
  (:data:`agents.evaluate.NORMALIZATION`: 0 = doing nothing, 1 = the oracle; in-domain
  tiers only);
* **success** rate with its exact Clopper–Pearson interval (in-domain tiers only: on
  out-of-domain targets no setting of the synth may reach the threshold);
* **final distance** mean with its target-clustered CI;
* **privileged** access and **budget**: env steps per episode, and for baselines their
  declared extra renders/gradients/hindsight replays and what they spent per episode.

Trained runs (``--runs``) join the tier whose env id they were trained on; runs of one
algorithm on one env are pooled as training seeds of one agent (the seed count is
shown). The "who wins" sentence is computed: the leader (highest normalized-score IQM;
lowest mean final distance where there is no score) is compared on the same episodes
with every other agent (:func:`agents.common.statistics.compare`, target-clustered CI of
the paired difference); the oracle is the scale's reference and is left out.

Outputs: ``OUT/leaderboard.md`` (every table and sentence), ``OUT/leaderboard.json``
and ``OUT/<tier>/`` (the evaluation's report).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from aegym.audio_io import atomic_write_bytes
from agents.baselines import BASELINE_FAMILIES, BASELINE_NAMES
from agents.common.cli import parse_args
from agents.common.envs import FAST_ENV_KWARGS, env_family
from agents.common.runs import read_run_config
from agents.common.statistics import Comparison, compare
from agents.evaluate import (
    NORMALIZATION,
    AgentResult,
    EvalArgs,
    EvalResult,
    episode_means,
    evaluate,
)
from agents.report import budget_cell, format_interval, format_success


@dataclass(frozen=True)
class Tier:
    """One leaderboard tier.

    :param name: short name (``--tiers``).
    :param env_id: the env.
    :param env_kwargs: env keyword arguments on top of the id's defaults.
    :param in_domain: targets with true knobs: oracle, normalized score and success.
    :param title: heading of the tier's table.
    """

    name: str
    env_id: str
    env_kwargs: dict[str, Any]
    in_domain: bool
    title: str


#: The tiers, in table order.
TIERS: dict[str, Tier] = {
    t.name: t
    for t in (
        Tier("easy", "AEGym/SoundMatch-Easy-v1", {}, True, "Easy (4 knobs, in-domain)"),
        Tier("medium", "AEGym/SoundMatch-Medium-v1", {}, True, "Medium (10 knobs, in-domain)"),
        Tier(
            "full",
            "AEGym/SoundMatch-Full-v1",
            {"target_kinds": ["in_domain"]},
            True,
            "Full (20 knobs), in-domain targets",
        ),
        Tier(
            "full-ood",
            "AEGym/SoundMatch-Full-v1",
            {"target_kinds": ["out_of_domain", "wav"]},
            False,
            "Full (20 knobs), out-of-domain / WAV targets",
        ),
        Tier("live", "AEGym/SoundMatchLive-v1", {}, True, "Live (tracking a gliding target)"),
        Tier("scheduler", "AEGym/SchedulerGains-v1", {}, True, "SchedulerGains (optimizer gains)"),
    )
}


@dataclass
class LeaderboardArgs:
    """Evaluate every applicable baseline (and trained runs) per tier on the same episodes."""

    tiers: list[str] = field(default_factory=lambda: list(TIERS))
    """tiers to run: easy, medium, full, full-ood, live, scheduler"""
    n_targets: int | None = 12
    """test targets per tier, spread evenly over the set (None: all)"""
    seeds: list[int] = field(default_factory=lambda: [0])
    """episode seeds; every target is played once per seed"""
    runs: list[str] = field(default_factory=list)
    """trained run folders; runs of one algorithm on one env are pooled as seeds"""
    baselines: list[str] = field(default_factory=lambda: list(BASELINE_NAMES))
    """baselines to play where they apply"""
    ood_target: str = "test"
    """full-ood targets: the test set's out-of-domain sounds, or a WAV path/folder"""
    fast: bool = False
    """short-audio env settings (agents.common.envs.FAST_ENV_KWARGS): smoke tests only"""
    out: str = "bench/leaderboard"
    """output folder"""
    max_parallel: int = 64
    """most episodes side by side in one vector env"""


def tier_for(env_id: str, env_kwargs: dict[str, Any]) -> Tier:
    """The tier an env id and its keyword arguments belong to: the first of
    :data:`TIERS` on that env whose own keyword arguments ``env_kwargs`` repeats; else an
    unnamed tier titled by the env id, without success or normalized score (its targets
    are not known to be in-domain).

    :param env_id: the env.
    :param env_kwargs: the env keyword arguments of the evaluation.
    """
    for tier in TIERS.values():
        if tier.env_id == env_id and all(
            env_kwargs.get(k) == v for k, v in tier.env_kwargs.items()
        ):
            return tier
    return Tier("custom", env_id, dict(env_kwargs), False, env_id)


def applicable_baselines(tier: Tier, names: list[str]) -> list[str]:
    """The baselines of ``names`` that exist for the tier's env family (the oracle only
    on in-domain tiers: elsewhere no true knobs exist).

    :param tier: the tier.
    :param names: candidate baseline names.
    """
    family = env_family(tier.env_id)
    return [
        n for n in names if family in BASELINE_FAMILIES[n] and (tier.in_domain or n != "oracle")
    ]


def pool_runs(run_dirs: list[str]) -> dict[str, list[str]]:
    """Agent specs per env id: runs of one algorithm on one env joined by commas (pooled
    as training seeds by :func:`agents.evaluate.evaluate`), in the order first given.

    :param run_dirs: run folders.
    :raises FileNotFoundError: a folder that is no run folder.
    :raises ValueError: a config.json that is no run config.
    """
    groups: dict[tuple[str, str], list[str]] = {}
    for d in run_dirs:
        args = read_run_config(d)["args"]
        groups.setdefault((str(args["env_id"]), str(args["algo"])), []).append(str(d))
    out: dict[str, list[str]] = {}
    for (env_id, _), dirs in groups.items():
        out.setdefault(env_id, []).append(",".join(dirs))
    return out


#: Reference agents left out of the "who wins" sentence.
REFERENCES: tuple[str, ...] = ("oracle",)


def _headline(result: EvalResult) -> tuple[str, bool]:
    """The metric agents are ranked and compared on, and whether higher is better."""
    if any("normalized_score" in a.metrics for a in result.agents):
        return "normalized_score", True
    return "final_distance", False


def _rank_value(agent: AgentResult, metric: str) -> float:
    s = agent.metrics.get(metric)
    if s is None:
        return math.nan
    return s.iqm if metric == "normalized_score" else s.mean


def who_wins(result: EvalResult, tier_title: str) -> tuple[str, list[dict[str, Any]]]:
    """A sentence saying who wins the tier, computed from paired comparisons, and the
    comparisons of the leader with every other (non-reference) agent.

    :param result: the tier's evaluation.
    :param tier_title: the tier's name in the sentence.
    """
    metric, higher = _headline(result)
    label = "normalized score" if metric == "normalized_score" else "final distance"
    players = [
        a
        for a in result.agents
        if a.source not in REFERENCES and math.isfinite(_rank_value(a, metric))
    ]
    if len(players) < 2:
        return f"{tier_title}: fewer than two agents to compare.", []
    sign = 1.0 if higher else -1.0
    players.sort(key=lambda a: -sign * _rank_value(a, metric))
    leader = players[0]
    xl = episode_means(leader, metric)
    comps: list[dict[str, Any]] = []
    for other in players[1:]:
        xo = episode_means(other, metric)
        keys = [k for k in xl if k in xo]
        c = compare(
            [xl[k] for k in keys], [xo[k] for k in keys], [k[0] for k in keys], metric, higher
        )
        comps.append({"a": leader.label, "b": other.label, "comparison": c})
    stat = "IQM" if metric == "normalized_score" else "mean"
    lead = f"{leader.label} ({label} {stat} {_rank_value(leader, metric):.2f})"
    tied = [c["b"] for c in comps if c["comparison"].verdict != "better"]
    # The interval quoted: against the best-ranked agent the leader does not beat, else
    # against the runner-up.
    quoted = next((c for c in comps if c["comparison"].verdict != "better"), comps[0])
    closest: Comparison = quoted["comparison"]
    ci = "Δ " + format_interval(closest.diff, closest.diff_low, closest.diff_high, _signed)
    if not tied:
        sentence = (
            f"{tier_title}: {lead} wins — better than every other agent on the same "
            f"episodes (paired {label}, 95 % target-clustered CI of the difference "
            f"excludes 0; runner-up {comps[0]['b']}: {ci})."
        )
    else:
        beaten = [c["b"] for c in comps if c["comparison"].verdict == "better"]
        sentence = (
            f"{tier_title}: {lead} leads but is not clearly better than "
            f"{', '.join(tied)} (paired {label}, 95 % CI of the difference includes 0; "
            f"vs {quoted['b']}: {ci})" + (f"; it beats {', '.join(beaten)}." if beaten else ".")
        )
    return sentence, comps


def _signed(v: float) -> str:
    return f"{v:+.2f}"


def _budget(agent: AgentResult) -> str:
    steps = sum(r.length for r in agent.episodes) / max(1, len(agent.episodes))
    text = f"{steps:.0f} env steps"
    if agent.cost is not None:
        extra = budget_cell(agent.cost)
        if extra != "—":
            text += f"; {extra}"
    return text


def _privileged(agent: AgentResult) -> str:
    if agent.cost is None:
        return "none (observation only)"
    return ", ".join(agent.cost["privileged"]) or "none"


def tier_rows(result: EvalResult, tier: Tier) -> list[dict[str, Any]]:
    """One JSON-ready row per agent of the tier's table.

    :param result: the tier's evaluation.
    :param tier: the tier.
    """
    rows = []
    for a in result.agents:
        norm = a.metrics.get("normalized_score")
        succ = a.metrics["success"]
        dist = a.metrics["final_distance"]
        rows.append(
            {
                "agent": a.label,
                "source": a.source,
                "training_seeds": None if a.algo == "baseline" else a.n_runs,
                "privileged": _privileged(a),
                "budget": _budget(a),
                "normalized_score": None if norm is None else asdict(norm),
                "success": asdict(succ) if tier.in_domain else None,
                "final_distance": asdict(dist),
            }
        )
    return rows


def format_tier_table(result: EvalResult, tier: Tier) -> str:
    """Markdown table of one tier: agent, training seeds, privileged access, budget,
    normalized-score IQM [CI], success [exact CI] (in-domain tiers), final distance
    mean [CI].

    :param result: the tier's evaluation.
    :param tier: the tier.
    """
    scored = any("normalized_score" in a.metrics for a in result.agents)
    head = ["agent", "training seeds", "privileged", "budget per episode"]
    head += ["normalized score IQM ↑"] if scored else []
    head += ["success ↑"] if tier.in_domain else []
    head += ["final distance ↓"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for a in result.agents:
        cells = [a.label, "—" if a.algo == "baseline" else str(a.n_runs)]
        cells += [_privileged(a), _budget(a)]
        if scored:
            s = a.metrics.get("normalized_score")
            cells.append("—" if s is None else format_interval(s.iqm, s.iqm_low, s.iqm_high))
        if tier.in_domain:
            cells.append(format_success(a.metrics["success"]))
        d = a.metrics["final_distance"]
        cells.append(format_interval(d.mean, d.ci_low, d.ci_high))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def summarize(result: EvalResult, env_kwargs: dict[str, Any]) -> tuple[Tier, str, str]:
    """An evaluation in the leaderboard's format, for commands that print one: its tier
    (:func:`tier_for` its env id and ``env_kwargs``), its table
    (:func:`format_tier_table`) and the computed who-wins sentence (:func:`who_wins`).

    :param result: the evaluation.
    :param env_kwargs: the env keyword arguments it ran with.
    """
    tier = tier_for(result.env_id, env_kwargs)
    return tier, format_tier_table(result, tier), who_wins(result, tier.title)[0]


def run_tier(tier: Tier, args: LeaderboardArgs, models: list[str]) -> dict[str, Any]:
    """Evaluate one tier (:func:`agents.evaluate.evaluate`) and build its table.

    :param tier: the tier.
    :param args: the leaderboard arguments.
    :param models: agent specs of trained runs for this tier's env (pooled by commas).
    :return: JSON-ready entry (``table`` and ``sentence`` as markdown text).
    """
    env_kwargs = dict(tier.env_kwargs)
    if args.fast:
        env_kwargs.update(FAST_ENV_KWARGS[tier.env_id])
    target_set = "test" if tier.in_domain else args.ood_target
    agents = [*applicable_baselines(tier, list(args.baselines)), *models]
    out_dir = Path(args.out) / tier.name
    t0 = time.perf_counter()
    result = evaluate(
        EvalArgs(
            env_id=tier.env_id,
            agents=agents,
            target_set=target_set,
            n_targets=args.n_targets,
            seeds=list(args.seeds),
            env_kwargs=env_kwargs,
            output_dir=str(out_dir),
            n_showcase=0,
            max_parallel=args.max_parallel,
            normalize=tier.in_domain and tier.env_id in NORMALIZATION,
        )
    )
    sentence, comps = who_wins(result, tier.title)
    return {
        "tier": tier.name,
        "title": tier.title,
        "env_id": tier.env_id,
        "env_kwargs": env_kwargs,
        "target_set": target_set,
        "in_domain": tier.in_domain,
        "n_targets": len(result.target_indices),
        "seeds": list(args.seeds),
        "n_episodes": len(result.target_indices) * len(args.seeds),
        "normalization": result.normalization,
        "rows": tier_rows(result, tier),
        "table": format_tier_table(result, tier),
        "sentence": sentence,
        "leader_comparisons": [
            {"a": c["a"], "b": c["b"], **asdict(c["comparison"])} for c in comps
        ],
        "report": str(out_dir / "report.html"),
        "wall_s": time.perf_counter() - t0,
    }


def validate(args: LeaderboardArgs) -> None:
    """Check the arguments, naming the bad value and what is allowed.

    :raises ValueError: unknown tier or baseline, no tier, no seed.
    """
    if not args.tiers:
        raise ValueError("tiers must name at least one tier")
    for t in args.tiers:
        if t not in TIERS:
            raise ValueError(f"unknown tier {t!r}; allowed: {', '.join(TIERS)}")
    for b in args.baselines:
        if b not in BASELINE_NAMES:
            raise ValueError(f"unknown baseline {b!r}; allowed: {', '.join(BASELINE_NAMES)}")
    if not args.seeds:
        raise ValueError("seeds must list at least one seed")


def leaderboard(args: LeaderboardArgs) -> dict[str, Any]:
    """Run every tier and write ``leaderboard.md`` and ``leaderboard.json`` to ``out``.

    :param args: the arguments.
    :return: the JSON-ready leaderboard.
    """
    validate(args)
    models = pool_runs(list(args.runs))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    tiers = [run_tier(TIERS[t], args, models.get(TIERS[t].env_id, [])) for t in args.tiers]
    data = {"n_targets": args.n_targets, "seeds": list(args.seeds), "tiers": tiers}
    atomic_write_bytes(out / "leaderboard.json", json.dumps(data, indent=1, default=str).encode())
    atomic_write_bytes(out / "leaderboard.md", format_leaderboard(data).encode())
    return data


def format_leaderboard(data: dict[str, Any]) -> str:
    """The markdown of every tier: heading, episodes, table, the computed sentence.

    :param data: what :func:`leaderboard` returns.
    """
    parts = ["# Leaderboard\n"]
    for t in data["tiers"]:
        norm = t["normalization"]
        how = ""
        if "metric" in norm:
            how = (
                f" Normalized score on {norm['metric'].replace('_', ' ')}: 0 = "
                f"{norm['zero']}, 1 = {norm['reference']} (same episode); "
                f"{norm['dropped']} of {norm['scored'] + norm['dropped']} episodes without "
                "scale dropped."
            )
        parts.append(
            f"## {t['title']} — `{t['env_id']}`\n\n"
            f"{t['n_targets']} test targets × {len(t['seeds'])} seed(s) = "
            f"{t['n_episodes']} episodes, the same for every agent ({t['target_set']}); "
            f"value [95 % CI], CIs resample targets (success: exact Clopper–Pearson).{how}\n\n"
            f"{t['table']}\n\n{t['sentence']}\n"
        )
    return "\n".join(parts)


def main(argv: list[str] | None = None) -> int:
    """``python -m agents leaderboard ...``: run, print the tables, write the files.
    Bad arguments print one ``error: ...`` line and return 2.

    :param argv: command-line words (None: ``sys.argv``).
    """
    args = parse_args(LeaderboardArgs, argv, prog="python -m agents leaderboard")
    try:
        data = leaderboard(args)
    except (ValueError, OSError) as err:
        print(f"error: {err}")
        return 2
    print(format_leaderboard(data))
    print(f"written: {Path(args.out) / 'leaderboard.md'}, leaderboard.json")
    return 0
