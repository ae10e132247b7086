"""tune-ae: the AE law's search space, stored settings, ablations and the command."""

from __future__ import annotations

import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from aegym.control.config import AEConfig
from aegym.envs.scheduler import SIGNAL_NAMES, SchedulerConfig, ae_law_action, symlog
from agents import tune
from agents.hyperparams import AE_TRACKING_LAW, ae_law_settings


def test_default_point_is_the_default_config() -> None:
    for kind in ("sound_match", "scheduler"):
        cfg, alpha0 = tune.ae_settings_from(tune._default_point(kind))
        assert cfg == AEConfig()
        assert alpha0 == (0.05 if kind == "sound_match" else None)


def test_settings_from_keeps_the_config_valid() -> None:
    cfg, alpha0 = tune.ae_settings_from({"momentum0": 0.95, "momentum_max": 0.8, "sigma0": 1e-8})
    assert cfg.momentum0 == 0.8 and cfg.sigma_min == 1e-8 and alpha0 is None


def test_ablations_switch_off_one_part_each() -> None:
    base = AEConfig(n_probes=5, sigma0=1e-2, var_damping=3.0)
    ab = tune.ae_ablations(base)
    assert ab["full"] == (base, True)
    assert ab["no_dither"][0].sigma0 == 0.0 and ab["no_dither"][0].n_probes == 5
    assert ab["no_local_tests"][0].n_probes == 0 and ab["no_local_tests"][0].sigma0 == 1e-2
    assert ab["no_variance_damping"][0].var_damping == 0.0
    frozen, adapt = ab["frozen"]
    assert not adapt and frozen.n_probes == 0 and frozen.sigma0 == 0.0
    assert frozen.momentum0 == base.momentum0  # same constants otherwise


def test_ae_law_settings_read_the_tuning_file(tmp_path) -> None:
    path = tmp_path / "ae_law.json"
    assert ae_law_settings("sound_match", path).config == AEConfig()  # no file: defaults
    path.write_text(
        json.dumps({"scheduler": {"config": {"up": 1.3}, "alpha0": None, "search": {"t": 1}}})
    )
    got = ae_law_settings("scheduler", path)
    assert got.config == AEConfig(up=1.3) and got.search == {"t": 1}
    assert ae_law_settings("sound_match", path).config == AEConfig()
    assert ae_law_settings("live", path).config == AE_TRACKING_LAW
    with pytest.raises(ValueError, match="unknown AE env kind 'x'"):
        ae_law_settings("x", path)


def _obs(cfg: SchedulerConfig, delta_loss: float, step: int) -> np.ndarray:
    obs = np.zeros((1, len(SIGNAL_NAMES)), dtype=np.float32)
    obs[0, SIGNAL_NAMES.index("delta_loss")] = float(symlog(torch.tensor(delta_loss), 100.0))
    obs[0, SIGNAL_NAMES.index("progress")] = step / cfg.episode_steps
    return obs


def test_ae_law_action_uses_the_policys_constants() -> None:
    cfg = SchedulerConfig()
    obs = _obs(cfg, 0.01, 0)  # improving by 1 %
    env_law = ae_law_action(obs, cfg)
    fast = ae_law_action(obs, cfg, replace(cfg.law, up=2.0))
    assert env_law[0, 0] == pytest.approx(np.log2(1.02), abs=1e-4)
    assert fast[0, 0] == pytest.approx(1.0)  # α ×2: the most one step allows
    assert env_law[0, 3] == 1.0  # a local test at step 0
    assert ae_law_action(obs, cfg, replace(cfg.law, n_probes=0))[0, 3] == -1.0


def test_tune_ae_command_writes_the_table(tmp_path, monkeypatch) -> None:
    path = tmp_path / "ae_law.json"
    monkeypatch.setattr(tune, "AE_TUNED_PATH", path)
    monkeypatch.setattr(tune, "load_ae_tuning", lambda: {})
    record = tmp_path / "search.json"
    argv = [
        "--env-id", "AEGym/SoundMatch-Easy-v1", "--trials", "2", "--n-targets", "1",
        "--env-kwargs", '{"duration_s": 0.25}', "--validate-targets", "0",
        "--write", "--json", str(record),
    ]  # fmt: skip
    assert tune.main_ae(argv) == 0
    table = json.loads(path.read_text())
    entry = table["sound_match"]
    assert "rejected" not in table and "validation" not in entry
    assert entry["search"]["trials"] == 2 and entry["search"]["episodes"] == 1
    assert entry["search"]["command"].startswith("python -m agents tune-ae --env-id")
    trials = json.loads(record.read_text())["all_trials"]
    assert len(trials) == 2 and trials[0]["params"] == tune._default_point("sound_match")
    best = min(t["mean_final_distance"] for t in trials)
    assert entry["search"]["train_mean_final_distance"] == pytest.approx(best)
    assert ae_law_settings("sound_match", path).alpha0 == entry["alpha0"]


def test_shipped_tuning_uses_only_validated_searches() -> None:
    # SchedulerGains' search did not validate on held-out train episodes: recorded
    # under "rejected", and the ae baseline there keeps the default constants.
    from agents.hyperparams import load_ae_tuning

    shipped = load_ae_tuning()
    assert "scheduler" not in shipped and "validation" in shipped["rejected"]["scheduler"]
    assert ae_law_settings("scheduler").config == AEConfig()
    assert ae_law_settings("sound_match").search is not None
    assert shipped["sound_match"]["validation"]["passed"] is True


@pytest.mark.parametrize("passed", [True, False])
def test_tune_ae_writes_only_what_passes_the_held_out_check(tmp_path, monkeypatch, passed):
    path = tmp_path / "ae_law.json"
    monkeypatch.setattr(tune, "AE_TUNED_PATH", path)
    monkeypatch.setattr(tune, "load_ae_tuning", lambda: {"sound_match": {"config": {}}})
    seen = {}

    def fake_validate(env_id, config, alpha0, n_targets, seeds, native, **kw):
        seen.update(n_targets=n_targets, seeds=seeds)
        return {"passed": passed}

    monkeypatch.setattr(tune, "validate_ae", fake_validate)
    argv = [
        "--env-id", "AEGym/SoundMatch-Easy-v1", "--trials", "1", "--n-targets", "1",
        "--env-kwargs", '{"duration_s": 0.25}', "--write",
    ]  # fmt: skip
    assert tune.main_ae(argv) == 0
    assert seen == {"n_targets": 48, "seeds": [100, 101]}  # the defaults: other episodes
    table = json.loads(path.read_text())
    if passed:
        assert table["sound_match"]["validation"] == {"passed": True}
        assert "rejected" not in table
    else:  # the earlier entry stays in use; the failed search is kept for the record
        assert table["sound_match"] == {"config": {}}
        assert table["rejected"]["sound_match"]["validation"] == {"passed": False}


def test_validate_ae_compares_on_the_same_held_out_episodes() -> None:
    fast = {"duration_s": 0.25}
    same = tune.validate_ae("AEGym/SoundMatch-Easy-v1", AEConfig(), None, 2, [7], **fast)
    # the defaults against themselves: identical episodes, no difference, not passed
    assert same["default_mean_final_distance"] == same["tuned_mean_final_distance"]
    assert same["tuned_minus_default"]["diff"] == 0.0 and same["passed"] is False
    assert same["n_targets"] == 2 and same["seeds"] == [7]


def test_tune_ae_bad_counts(capsys) -> None:
    assert tune.main_ae(["--trials", "0"]) == 2
    assert "trials must be a positive integer, got 0" in capsys.readouterr().out
    assert tune.main_ae(["--validate-targets", "-1"]) == 2
    assert "validate_targets must be an integer >= 0, got -1" in capsys.readouterr().out
