"""Leaderboard: tiers, applicable baselines, pooled runs, tables and the computed verdict."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from agents.common.envs import FAST_ENV_KWARGS
from agents.common.episodes import EpisodeRecord
from agents.evaluate import AgentResult, EvalResult, summarize_metrics
from agents.leaderboard import (
    TIERS,
    applicable_baselines,
    format_tier_table,
    main,
    pool_runs,
    summarize,
    tier_for,
    who_wins,
)
from agents.train import TrainArgs, train

SM = "AEGym/SoundMatch-Easy-v1"


def test_applicable_baselines_per_tier() -> None:
    everything = ["ae", "random", "static", "adam", "oracle", "random_search", "cmaes", "nearest"]
    assert applicable_baselines(TIERS["easy"], everything) == everything
    # Out-of-domain targets have no true knobs: no oracle.
    assert "oracle" not in applicable_baselines(TIERS["full-ood"], everything)
    # SchedulerGains has no knobs to search over.
    assert applicable_baselines(TIERS["scheduler"], everything) == [
        "ae",
        "random",
        "static",
        "adam",
        "oracle",
    ]


def test_tier_for_an_evaluation() -> None:
    assert tier_for(SM, {}) is TIERS["easy"]
    assert tier_for(SM, {"duration_s": 0.25}) is TIERS["easy"]
    full = "AEGym/SoundMatch-Full-v1"
    assert tier_for(full, {"target_kinds": ["in_domain"]}) is TIERS["full"]
    assert tier_for(full, {"target_kinds": ["out_of_domain", "wav"]}) is TIERS["full-ood"]
    # Full with its whole target set mixes in- and out-of-domain: no success column.
    mixed = tier_for(full, {})
    assert mixed.name == "custom" and not mixed.in_domain and mixed.title == full


def _write_run(folder: Path, env_id: str, algo: str) -> str:
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        json.dumps({"args": {"env_id": env_id, "algo": algo}, "env_kwargs": {}})
    )
    return str(folder)


def test_runs_are_pooled_by_env_and_algorithm(tmp_path: Path) -> None:
    a0 = _write_run(tmp_path / "ppo_s0", SM, "ppo")
    s0 = _write_run(tmp_path / "sac_s0", SM, "sac")
    a1 = _write_run(tmp_path / "ppo_s1", SM, "ppo")
    g0 = _write_run(tmp_path / "ppo_sg", "AEGym/SchedulerGains-v1", "ppo")
    assert pool_runs([a0, s0, a1, g0]) == {
        SM: [f"{a0},{a1}", s0],
        "AEGym/SchedulerGains-v1": [g0],
    }
    with pytest.raises(FileNotFoundError, match="run folder"):
        pool_runs([str(tmp_path / "missing")])


def _agent(label: str, scores: list[float], source: str | None = None) -> AgentResult:
    """An agent whose episode i (target i // 2, seed i % 2) has normalized score
    ``scores[i]``."""
    records = []
    for i, s in enumerate(scores):
        r = EpisodeRecord(i // 2, i % 2, 0.0, 1, 1.0, False, 1, 0, [2.0, 1.0])
        r.normalized_score = s
        records.append(r)
    a = AgentResult(label, source or label, "baseline", records, summarize_metrics(records), 0.0)
    values = [r.normalized_score for r in records]
    from agents.common.statistics import summarize

    a.metrics["normalized_score"] = summarize(values, [r.target_index for r in records])
    return a


def _result(agents: list[AgentResult]) -> EvalResult:
    return EvalResult(SM, "test", [0, 1, 2, 3], ["a", "b", "c", "d"], [0, 1], {}, agents, 50, 1.0)


def test_who_wins_from_paired_comparisons() -> None:
    rng = np.random.default_rng(0)
    base = list(rng.uniform(0.0, 0.5, 8))
    clear = _agent("clear", [b + 0.4 for b in base])  # better on every episode
    other = _agent("other", base)
    close = _agent("close", [b + 0.4 + (0.05 if i % 2 else -0.05) for i, b in enumerate(base)])
    oracle = _agent("oracle", [1.0] * 8)
    sentence, comps = who_wins(_result([other, clear, oracle]), "Easy")
    # The oracle is the scale's reference: never the winner, never compared.
    assert sentence.startswith("Easy: clear (normalized score IQM") and " wins " in sentence
    assert [c["b"] for c in comps] == ["other"]
    assert comps[0]["comparison"].verdict == "better"
    # A second agent within noise of the leader: "leads but is not clearly better".
    sentence, comps = who_wins(_result([other, clear, close, oracle]), "Easy")
    assert "leads but is not clearly better than" in sentence
    assert "it beats other" in sentence
    tied = {c["b"] for c in comps if c["comparison"].verdict != "better"}
    assert tied and tied <= {"clear", "close"}


def test_summarize_is_the_tier_table_and_sentence() -> None:
    """What the main job and the sweep print: the tier found from the env id and its
    keyword arguments, that tier's table and the who-wins sentence."""
    base = list(np.random.default_rng(2).uniform(0.0, 0.5, 8))
    result = _result([_agent("a", base), _agent("b", [b + 0.4 for b in base])])
    tier, table, sentence = summarize(result, {})
    assert tier == TIERS["easy"]
    assert table == format_tier_table(result, tier)
    assert sentence == who_wins(result, tier.title)[0] and sentence.startswith("Easy (4 knobs")


def test_who_wins_quotes_the_agent_it_does_not_beat() -> None:
    # The runner-up by score is beaten on every episode; a lower-ranked, noisy agent is
    # not: the sentence quotes the interval against the noisy one.
    base = list(np.random.default_rng(1).uniform(0.0, 0.5, 8))
    lead = _agent("lead", [b + 0.4 for b in base])
    runner = _agent("runner", [b + 0.39 for b in base])
    noisy = _agent("noisy", [b + 0.3 + (0.3 if i // 2 % 2 else -0.3) for i, b in enumerate(base)])
    sentence, comps = who_wins(_result([runner, noisy, lead]), "Easy")
    assert [c["b"] for c in comps] == ["runner", "noisy"]
    assert "not clearly better than noisy" in sentence and "vs noisy: Δ" in sentence
    assert "it beats runner" in sentence


def test_leaderboard_end_to_end_tiny(tmp_path: Path) -> None:
    runs = []
    for seed in (0, 1):
        res = train(
            TrainArgs(
                env_id=SM,
                algo="ppo",
                total_timesteps=16,
                seed=seed,
                output_dir=str(tmp_path / "runs"),
                run_name=f"ppo_s{seed}",
                env_kwargs=FAST_ENV_KWARGS[SM],
                n_envs=2,
                hyperparams={"n_steps": 8, "batch_size": 8, "n_epochs": 1},
                progress=False,
            )
        )
        runs.append(str(res.run_dir))
    out = tmp_path / "lb"
    args = [
        "--tiers",
        "easy",
        "full-ood",
        "--n-targets",
        "2",
        "--seeds",
        "0",
        "--baselines",
        "static",
        "random",
        "oracle",
        "--fast",
        "--runs",
        *runs,
        "--out",
        str(out),
    ]
    assert main(args) == 0
    data = json.loads((out / "leaderboard.json").read_text())
    easy, ood = data["tiers"]
    rows = {r["agent"]: r for r in easy["rows"]}
    # Baselines and the two PPO runs pooled as one agent with 2 training seeds.
    assert list(rows) == ["static", "random", "oracle", "ppo"]
    assert rows["ppo"]["training_seeds"] == 2 and rows["static"]["training_seeds"] is None
    assert rows["oracle"]["privileged"] == "true_knobs"
    assert rows["oracle"]["normalized_score"]["iqm"] == pytest.approx(1.0)
    assert rows["static"]["success"]["n"] == 2
    assert "| normalized score IQM ↑ | success ↑ | final distance ↓ |" in easy["table"]
    # The sentence names the non-reference agent with the best IQM.
    best = max(
        (r for r in easy["rows"] if r["agent"] != "oracle"),
        key=lambda r: r["normalized_score"]["iqm"],
    )
    assert easy["sentence"].startswith(f"{TIERS['easy'].title}: {best['agent']} ")
    assert {c["b"] for c in easy["leader_comparisons"]} == {"static", "random", "ppo"} - {
        best["agent"]
    }
    # Out-of-domain: no oracle, no normalized score, no success column; PPO was trained
    # on the Easy env, so it does not play here.
    assert [r["agent"] for r in ood["rows"]] == ["static", "random"]
    assert all(r["success"] is None and r["normalized_score"] is None for r in ood["rows"])
    assert "success" not in ood["table"] and "normalized" not in ood["table"]
    assert (out / "easy" / "report.html").is_file() and (out / "leaderboard.md").is_file()
    md = (out / "leaderboard.md").read_text()
    assert easy["sentence"] in md and ood["sentence"] in md


def test_bad_arguments_name_the_value(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--tiers", "hard"]) == 2
    assert "unknown tier 'hard'" in capsys.readouterr().out
    assert main(["--tiers", "easy", "--baselines", "genius"]) == 2
    assert "unknown baseline 'genius'" in capsys.readouterr().out
