"""Evaluation: same episodes for every agent, output schema, report contents, errors."""

from __future__ import annotations

import json
import zipfile
from dataclasses import fields, replace
from pathlib import Path

import numpy as np
import pytest

from aegym.envs.sound_match import SoundMatchConfig
from aegym.reward import RewardConfig
from agents.common.envs import FAST_ENV_KWARGS
from agents.common.episodes import METRICS, select_targets
from agents.common.statistics import mean_ci, mean_normal_band
from agents.evaluate import EvalArgs, evaluate, main
from agents.report import format_comparisons, format_table, markdown_to_html_table, read_progress
from agents.train import TrainArgs, train

SM = "AEGym/SoundMatch-Easy-v1"
SG = "AEGym/SchedulerGains-v1"


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    res = train(
        TrainArgs(
            env_id=SM,
            algo="ppo",
            total_timesteps=32,
            output_dir=str(out),
            env_kwargs=FAST_ENV_KWARGS[SM],
            n_envs=2,
            hyperparams={"n_steps": 8, "batch_size": 8, "n_epochs": 1},
            progress=False,
        )
    )
    return res.model_path


@pytest.fixture(scope="module")
def knob_eval(model_path: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("eval")
    args = EvalArgs(
        env_id=SM,
        agents=[str(model_path), "ae", "static", "random"],
        n_targets=3,
        seeds=[0, 1],
        env_kwargs=FAST_ENV_KWARGS[SM],
        output_dir=str(out),
        n_showcase=1,
        max_parallel=4,  # 6 episodes: one full batch and one padded batch
    )
    return evaluate(args), out


def test_results_schema(knob_eval) -> None:
    _, out = knob_eval
    data = json.loads((out / "results.json").read_text())
    assert data["env_id"] == SM and data["target_set"] == "test"
    assert data["target_indices"] == [0, 32, 63] and data["seeds"] == [0, 1]  # 64 in-domain
    assert [a["label"] for a in data["agents"]] == ["ppo", "ae", "static", "random"]
    for agent in data["agents"]:
        assert set(agent["metrics"]) == set(METRICS)
        for name, m in agent["metrics"].items():
            assert set(m) >= {"mean", "ci_low", "ci_high", "n", "iqm", "n_targets"}
            assert m["n"] == 6 and agent["n_runs"] == 1
            assert m["ci_low"] <= m["mean"] <= m["ci_high"]
            want = "clopper-pearson" if name == "success" else "cluster-bootstrap"
            assert m["method"] == want
        assert len(agent["episodes"]) == 6
        ep = agent["episodes"][0]
        assert set(ep) >= {
            "target_index",
            "seed",
            "episode_return",
            "length",
            "final_distance",
            "success",
            "steps_to_threshold",
            "violations",
            "distances",
        }
        assert len(ep["distances"]) == ep["length"] + 1
        assert ep["distances"][-1] == pytest.approx(ep["final_distance"])
        assert 0 <= ep["steps_to_threshold"] <= data["episode_limit"]
    assert data["agents"][0]["run_dir"] is not None
    # Every pair of agents, compared on the same episodes.
    pairs = [(c["a"], c["b"]) for c in data["comparisons"]]
    assert len(pairs) == 6 and pairs[0] == ("ppo", "ae")
    for c in data["comparisons"]:
        d = c["final_distance"]
        assert d["n"] == 6 and d["n_targets"] == 3
        assert d["diff_low"] <= d["diff"] <= d["diff_high"] and 0 <= d["p_improve"] <= 1
    # The env's own settings, read from the created env: every field, defaults included.
    assert data["success_distance"] == SoundMatchConfig().success_distance
    assert set(data["env_config"]) == {f.name for f in fields(SoundMatchConfig)}
    assert data["env_config"]["duration_s"] == FAST_ENV_KWARGS[SM]["duration_s"]
    assert data["env_config"]["reward"]["w_aud"] == RewardConfig().w_aud


def test_every_agent_plays_the_same_episodes(knob_eval) -> None:
    result, _ = knob_eval
    keys = [[(e.target_index, e.seed) for e in a.episodes] for a in result.agents]
    assert all(k == keys[0] for k in keys)
    starts = [[e.distances[0] for e in a.episodes] for a in result.agents]
    for s in starts[1:]:  # same targets and start knobs: same initial distance
        np.testing.assert_allclose(s, starts[0], rtol=1e-5)
    static = result.agents[2]
    for e in static.episodes:  # the static agent never changes the sound
        np.testing.assert_allclose(e.distances, e.distances[0], rtol=1e-5)


def test_report_files_and_html(knob_eval) -> None:
    result, out = knob_eval
    for name in (
        "results.md",
        "distance_over_steps.png",
        "learning_curves.png",
        "spectrograms.png",
        "report.html",
    ):
        assert (out / name).is_file(), name
    wavs = sorted(p.name for p in (out / "wav").glob("*.wav"))
    assert wavs == ["ae_0.wav", "ppo_0.wav", "random_0.wav", "static_0.wav", "target_0.wav"]
    page = (out / "report.html").read_text()
    assert '<table class="results">' in page
    for label in ("ppo", "ae", "static", "random"):
        assert f"<td>{label}</td>" in page
    assert page.count("<img") == 3 and "data:image/png;base64," in page
    assert page.count("<audio") == 5 and "data:audio/wav;base64," in page
    assert 'src="file:' not in page and "http" not in page  # self-contained
    md = (out / "results.md").read_text()
    assert format_table(result) in md and format_comparisons(result) in md
    assert "<h2>Paired comparisons</h2>" in page and "<td>ppo vs ae</td>" in page


def test_scheduler_with_adam_baseline(tmp_path: Path) -> None:
    result = evaluate(
        EvalArgs(
            env_id=SG,
            agents=["ae", "adam", "static"],
            n_targets=1,
            seeds=[0],
            env_kwargs=FAST_ENV_KWARGS[SG],
            output_dir=str(tmp_path),
            n_showcase=1,
        )
    )
    assert [a.label for a in result.agents] == ["ae", "adam", "static"]
    assert result.episode_limit == 20
    assert (tmp_path / "wav" / "adam_0.wav").is_file()
    assert all(a.episodes[0].length <= 20 for a in result.agents)


def test_success_threshold_is_the_envs(tmp_path: Path) -> None:
    # A threshold above every start distance: the env ends each episode at its first
    # step as a success, and the metrics agree with it (0 steps to the threshold).
    result = evaluate(
        EvalArgs(
            env_id=SM,
            agents=["static"],
            n_targets=2,
            seeds=[0],
            env_kwargs={**FAST_ENV_KWARGS[SM], "success_distance": 1e6},
            output_dir=str(tmp_path),
            n_showcase=1,
        )
    )
    assert result.success_distance == 1e6
    for e in result.agents[0].episodes:
        assert e.success and e.steps_to_threshold == 0 and e.length == 1
    data = json.loads((tmp_path / "results.json").read_text())
    assert data["success_distance"] == data["env_config"]["success_distance"] == 1e6
    assert "distance &lt; 1000000.0." in (tmp_path / "report.html").read_text()


def test_mean_normal_band() -> None:
    values = np.array([[1.0, 2.0], [3.0, np.nan]])
    mean, half = mean_normal_band(values)
    np.testing.assert_allclose(mean, [2.0, 2.0])
    np.testing.assert_allclose(half, [1.96 * 1.0 / np.sqrt(2), 0.0])


def test_mean_ci_and_targets() -> None:
    s = mean_ci([1.0, 2.0, 3.0, 4.0])
    assert s.mean == 2.5 and s.ci_low < 2.5 < s.ci_high and s.n == 4
    assert mean_ci([1.0, 2.0, 3.0, 4.0]) == s  # reproducible
    assert mean_ci([]).n == 0 and np.isnan(mean_ci([]).mean)
    assert mean_ci([2.0]).ci_low == 2.0
    assert select_targets(SM, "test", 4, {}) == [0, 21, 42, 63]  # Easy: in-domain only
    assert select_targets(SM, "test", None, {}) == list(range(64))
    html = markdown_to_html_table("| a | b |\n|---|---|\n| x | 1 |")
    assert "<th>a</th>" in html and "<td>x</td>" in html


def test_read_progress_joins_resumed_logs(tmp_path: Path) -> None:
    (tmp_path / "progress.csv").write_text("time/total_timesteps,x\n10,1\n20,2\n")
    (tmp_path / "progress_000000020.csv").write_text("time/total_timesteps,x,y\n30,3,5\n")
    cols = read_progress(tmp_path)
    np.testing.assert_array_equal(cols["time/total_timesteps"], [10, 20, 30])
    assert np.isnan(cols["y"][0]) and cols["y"][2] == 5


@pytest.mark.parametrize(
    ("changes", "error", "match"),
    [
        ({"env_id": "Nope-v0"}, ValueError, r"unknown env id 'Nope-v0'; allowed:"),
        ({"agents": ["foo"]}, FileNotFoundError, r"agent 'foo' is neither a baseline \(ae, random"),
        ({"agents": ["/no/model.zip"]}, FileNotFoundError, r"'/no/model.zip' is neither"),
        (
            {"env_id": "AEGym/SchedulerGains-v1", "agents": ["nearest"]},
            ValueError,
            r"'nearest' baseline only exists for knob envs",
        ),
        ({"agents": []}, ValueError, r"at least one agent"),
        ({"seeds": []}, ValueError, r"at least one seed"),
        ({"n_targets": 0}, ValueError, r"n_targets must be a positive integer, got 0"),
        ({"max_parallel": -1}, ValueError, r"max_parallel must be a positive integer, got -1"),
    ],
)
def test_bad_arguments(tmp_path: Path, changes: dict, error: type, match: str) -> None:
    args = EvalArgs(output_dir=str(tmp_path))
    for k, v in changes.items():
        setattr(args, k, v)
    with pytest.raises(error, match=match):
        evaluate(args)


def test_model_env_mismatch(model_path: Path, tmp_path: Path) -> None:
    args = EvalArgs(
        agents=[str(model_path)],
        env_kwargs={**FAST_ENV_KWARGS[SM], "free_knobs": "medium"},
        n_targets=1,
        seeds=[0],
        output_dir=str(tmp_path),
    )
    with pytest.raises(ValueError, match=r"expects observations of shape \(79,\)"):
        evaluate(args)


def test_cli(model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = [
        "--agents", f"ppo:{model_path}", "static", "--n-targets", "1", "--seeds", "3",
        "--env-kwargs", json.dumps(FAST_ENV_KWARGS[SM]), "--output-dir", str(tmp_path),
        "--n-showcase", "0",
    ]  # fmt: skip
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| ppo |" in out and "| static |" in out and "report.html" in out
    assert main(["--agents", "nope.zip", "--output-dir", str(tmp_path)]) == 2
    assert "agent 'nope.zip' is neither a baseline" in capsys.readouterr().out


def _bad_models(tmp_path: Path) -> dict[str, Path]:
    corrupt = tmp_path / "corrupt.zip"
    corrupt.write_bytes(b"PK\x03\x04 this is not really a zip")
    foreign = tmp_path / "foreign.zip"
    with zipfile.ZipFile(foreign, "w") as zf:
        zf.writestr("weights.bin", b"123")
    not_json = tmp_path / "not_json.zip"
    with zipfile.ZipFile(not_json, "w") as zf:
        zf.writestr("data", b"\x00\x01 not json")
    return {"corrupt": corrupt, "foreign": foreign, "not_json": not_json}


def test_bad_model_files_are_named(model_path: Path, tmp_path: Path) -> None:
    bad = _bad_models(tmp_path)
    cases = [
        (str(bad["corrupt"]), rf"^agent '{bad['corrupt']}': '{bad['corrupt']}' is not a zip file"),
        (
            str(bad["foreign"]),
            rf"^agent '{bad['foreign']}': '{bad['foreign']}' is not a Stable-Baselines3 model: "
            r"no 'data' entry \(it holds \['weights.bin'\]",
        ),
        (str(bad["not_json"]), rf"'{bad['not_json']}' is not a readable Stable-Baselines3 model"),
        (
            f"xyz:{model_path}",
            rf"^agent 'xyz:{model_path}': unknown algorithm prefix 'xyz'; allowed: ppo, sac, "
            r"a2c, shaped_ppo",
        ),
        (
            f"sac:{model_path}",
            rf"^agent 'sac:{model_path}': '{model_path}' holds a ppo model, not sac",
        ),
        (f"a2c:{model_path}", r"holds a ppo model, not a2c"),
    ]
    for spec, match in cases:
        args = EvalArgs(env_kwargs=FAST_ENV_KWARGS[SM], agents=[spec], n_targets=1, seeds=[0],
                        output_dir=str(tmp_path / "out"))  # fmt: skip
        with pytest.raises(ValueError, match=match) as info:
            evaluate(args, write=False)
        assert "\n" not in str(info.value)
    assert not (tmp_path / "out").exists()


def test_cli_names_bad_model_files(
    model_path: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = _bad_models(tmp_path)
    for spec, expected in [
        (str(bad["corrupt"]), f"error: agent '{bad['corrupt']}': '{bad['corrupt']}' is not a zip"),
        (str(bad["foreign"]), f"error: agent '{bad['foreign']}': '{bad['foreign']}' is not a St"),
        (f"xyz:{model_path}", f"error: agent 'xyz:{model_path}': unknown algorithm prefix 'xyz'"),
        (f"sac:{model_path}", f"error: agent 'sac:{model_path}': '{model_path}' holds a ppo"),
    ]:
        assert main(["--agents", spec, "--output-dir", str(tmp_path / "out")]) == 2
        out = capsys.readouterr().out
        assert out.startswith(expected) and out.count("\n") == 1, out


def test_unknown_env_kwarg_is_named(tmp_path: Path) -> None:
    args = EvalArgs(agents=["static"], env_kwargs={"duraton_s": 0.25}, output_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"^unknown env_kwargs 'duraton_s' for AEGym/SoundMatch"):
        evaluate(args)


def test_run_folder_as_agent(model_path: Path) -> None:
    result = evaluate(
        EvalArgs(
            env_kwargs=FAST_ENV_KWARGS[SM],
            agents=[str(model_path.parent), f"ppo:{model_path}"],
            n_targets=1,
            seeds=[0],
        ),
        write=False,
    )
    assert [a.source for a in result.agents] == [str(model_path)] * 2
    assert result.agents[0].label == "ppo" and result.agents[0].algo == "ppo"
    assert result.agents[0].episodes[0].distances == result.agents[1].episodes[0].distances


def test_pooled_training_runs(model_path: Path, tmp_path: Path) -> None:
    # Two runs joined by a comma are one agent: every run plays every episode.
    result = evaluate(
        EvalArgs(
            env_id=SM,
            agents=[f"{model_path},{model_path}", "static"],
            n_targets=2,
            seeds=[0],
            env_kwargs=FAST_ENV_KWARGS[SM],
            output_dir=str(tmp_path),
            n_showcase=0,
        )
    )
    ppo = result.agents[0]
    assert ppo.label == "ppo" and ppo.n_runs == 2 and len(ppo.episodes) == 4
    assert sorted(e.run for e in ppo.episodes) == [0, 0, 1, 1]
    assert ppo.metrics["final_distance"].n_runs == 2
    table = format_table(result)
    assert "| training seeds |" in table.splitlines()[0] and "| ppo | 2 |" in table
    assert result.comparisons[0]["final_distance"].n == 2  # runs averaged per episode


def _record(target: int, seed: int, start: float, final: float, run: int = 0):
    from agents.common.episodes import EpisodeRecord

    return EpisodeRecord(target, seed, 0.0, 1, final, False, 1, 0, [start, final], run=run)


def _agent(label: str, records: list):
    from agents.evaluate import AgentResult, summarize_metrics

    return AgentResult(label, label, "baseline", records, summarize_metrics(records), 0.0)


def test_normalized_scores_by_hand() -> None:
    from agents.evaluate import MIN_ORACLE_GAIN, add_normalized_scores

    # Start distances 10 and 6 (targets 0, 1); the oracle ends at 2 and 4; target 2 starts
    # where the oracle ends (gain < MIN_ORACLE_GAIN): dropped from the score.
    starts = {0: 10.0, 1: 6.0, 2: 1.0}
    oracle = _agent("oracle", [_record(t, 0, starts[t], f) for t, f in ((0, 2.0), (1, 4.0))])
    oracle.episodes.append(_record(2, 0, 1.0, 1.0 - MIN_ORACLE_GAIN / 2))
    static = _agent("static", [_record(t, 0, s, s) for t, s in starts.items()])
    half = _agent("half", [_record(0, 0, 10.0, 6.0), _record(1, 0, 6.0, 5.0), _record(2, 0, 1, 0)])
    info = add_normalized_scores([oracle, static, half], oracle)
    assert info["scored"] == 2 and info["dropped"] == 1
    assert [r.normalized_score for r in oracle.episodes[:2]] == [1.0, 1.0]
    assert [r.normalized_score for r in static.episodes[:2]] == [0.0, 0.0]
    assert [r.normalized_score for r in half.episodes[:2]] == [0.5, 0.5]
    for a in (oracle, static, half):  # the dropped episode: NaN, never a number
        assert np.isnan(a.episodes[2].normalized_score)
        assert a.metrics["normalized_score"].n == 2
    assert half.metrics["normalized_score"].iqm == pytest.approx(0.5)
    assert static.metrics["normalized_score"].iqm == 0.0


def test_normalized_score_end_to_end(tmp_path: Path) -> None:
    args = EvalArgs(
        env_id=SM,
        agents=["oracle", "static", "random"],
        n_targets=2,
        seeds=[0],
        env_kwargs=FAST_ENV_KWARGS[SM],
        output_dir=str(tmp_path),
        max_parallel=2,
    )
    result = evaluate(args, write=False)
    by = {a.label: a.metrics["normalized_score"] for a in result.agents}
    assert by["oracle"].iqm == pytest.approx(1.0) and by["oracle"].n == 2
    assert by["static"].iqm == pytest.approx(0.0, abs=1e-5)
    assert by["random"].n == 2 and np.isfinite(by["random"].iqm)
    assert result.normalization["reference"] == "oracle" and result.normalization["dropped"] == 0
    table = format_table(result)
    head = [c.strip() for c in table.splitlines()[0].strip("|").split("|")]
    assert head.index("normalized score IQM ↑") == head.index("final distance IQM ↓") + 1
    assert "nan" not in table.lower()
    data = json.loads(json.dumps(result.to_dict()))
    rows = {a["label"]: a for a in data["agents"]}
    assert rows["oracle"]["metrics"]["normalized_score"]["iqm"] == pytest.approx(1.0)
    assert all(e["normalized_score"] == pytest.approx(1.0) for e in rows["oracle"]["episodes"])
    # Performance profiles: the oracle (score 1) is at 1 for every tau <= 1, static at 0
    # above 0.
    prof = rows["oracle"]["performance_profile"]
    assert prof["taus"][0] == 0.0 and prof["taus"][-1] == 1.0
    assert prof["fraction"] == pytest.approx([1.0] * len(prof["taus"]))
    static = rows["static"]["performance_profile"]
    assert static["fraction"][-1] == 0.0 and static["n"] == 2


def test_normalized_score_on_live_and_scheduler(tmp_path: Path) -> None:
    # Live: mean distance over the episode, 0 = static, 1 = the tracking oracle;
    # SchedulerGains: final distance, 0 = static (default gains), 1 = hindsight oracle.
    live = "AEGym/SoundMatchLive-v1"
    for env_id, metric in ((live, "mean_distance"), (SG, "final_distance")):
        args = EvalArgs(
            env_id=env_id,
            agents=["random"],
            n_targets=2,
            seeds=[0],
            env_kwargs=FAST_ENV_KWARGS[env_id],
            output_dir=str(tmp_path),
            normalize=True,
        )
        result = evaluate(args, write=False)
        assert [a.label for a in result.agents] == ["random", "oracle", "static"]
        norm = result.normalization
        assert norm["zero"] == "static" and norm["metric"] == metric
        by = {a.label: a for a in result.agents}
        for r_static, r_oracle, r in zip(
            by["static"].episodes, by["oracle"].episodes, by["random"].episodes, strict=True
        ):
            z, o, x = (e.metric(metric) for e in (r_static, r_oracle, r))
            if z - o >= 1e-6:
                assert r_static.normalized_score == pytest.approx(0.0)
                assert r_oracle.normalized_score == pytest.approx(1.0)
                assert r.normalized_score == pytest.approx((z - x) / (z - o))
            else:
                assert np.isnan(r.normalized_score)
        assert norm["scored"] + norm["dropped"] == 2
        if env_id == live:  # the oracle tracks: below static's mean distance every time
            assert norm["scored"] == 2
    # The oracle named without the zero reference (and no --normalize): skipped, said why.
    args = EvalArgs(
        env_id=live,
        agents=["oracle"],
        n_targets=2,
        seeds=[0],
        env_kwargs=FAST_ENV_KWARGS[live],
        output_dir=str(tmp_path),
    )
    result = evaluate(args, write=False)
    assert "'static'" in result.normalization["skipped"]
    assert "normalized_score" not in result.agents[0].metrics


def test_normalize_flag_adds_the_oracle_or_says_why_not(tmp_path: Path) -> None:
    kw = {"env_kwargs": FAST_ENV_KWARGS[SM], "output_dir": str(tmp_path), "seeds": [0]}
    result = evaluate(
        EvalArgs(env_id=SM, agents=["static"], n_targets=2, normalize=True, **kw), False
    )
    assert [a.label for a in result.agents] == ["static", "oracle"]
    assert result.agents[0].metrics["normalized_score"].iqm == pytest.approx(0.0, abs=1e-5)
    # SoundMatch-Full's test set holds recordings without true knobs: no oracle, no column.
    full = "AEGym/SoundMatch-Full-v1"
    args = EvalArgs(env_id=full, agents=["static"], n_targets=2, normalize=True, **kw)
    result = evaluate(replace(args, env_kwargs=FAST_ENV_KWARGS[full]), write=False)
    assert [a.label for a in result.agents] == ["static"]
    assert "true knobs" in result.normalization["skipped"]
    assert "normalized score" not in format_table(result)
    assert all(e["normalized_score"] is None for e in result.to_dict()["agents"][0]["episodes"])


def test_no_oracle_no_normalized_column(knob_eval) -> None:
    result, _ = knob_eval
    assert result.normalization == {}
    assert "normalized score" not in format_table(result)
