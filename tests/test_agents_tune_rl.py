"""Optuna tuning of RL hyperparameters on train targets (`python -m agents tune-rl`)."""

from __future__ import annotations

import json
import sys

import pytest

from agents.common.envs import FAST_ENV_KWARGS
from agents.train import check_hyperparams
from agents.tune import import_optuna
from agents.tune_rl import TuneRLArgs, check_tune_args, sample_ppo, tune_rl

ENV = "AEGym/SoundMatch-Easy-v1"

optuna = pytest.importorskip("optuna")


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"algo": "sac"}, "algo"),
        ({"trials": 0}, "trials"),
        ({"timesteps": -5}, "timesteps"),
        ({"n_targets": True}, "n_targets"),
        ({"seeds": []}, "seeds"),
        ({"env_id": "AEGym/Nope-v1"}, "Nope"),
    ],
)
def test_bad_arguments_are_named(kwargs, word):
    with pytest.raises(ValueError, match=word):
        check_tune_args(TuneRLArgs(**kwargs))


def test_missing_optuna_names_the_install_command(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ImportError, match=r"tune-rl needs Optuna: pip install -e \"\.\[tune\]\""):
        import_optuna("tune-rl")


@pytest.mark.parametrize("n_envs", [1, 2, 8])
def test_sampled_hyperparams_are_valid_ppo_arguments(n_envs):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(20):
        trial = study.ask()
        params = sample_ppo(trial, n_envs)
        assert check_hyperparams("ppo", params) is params
        assert (params["n_steps"] * n_envs) % params["batch_size"] == 0
        assert 1e-4 <= params["learning_rate"] <= 3e-3
        study.tell(trial, 0.0)


def test_study_runs_writes_the_best_and_resumes(tmp_path):
    args = TuneRLArgs(
        env_id=ENV,
        trials=2,
        timesteps=128,
        n_targets=1,
        env_kwargs=FAST_ENV_KWARGS[ENV],
        out=str(tmp_path / "study"),
    )
    result = tune_rl(args)
    saved = json.loads((tmp_path / "study" / "tuning.json").read_text())
    assert saved["best"] == result["best"]
    assert len(saved["trials"]) == 2
    values = [t["value"] for t in saved["trials"] if t["state"] == "COMPLETE"]
    assert result["best"]["value"] == min(values)
    check_hyperparams("ppo", result["best"]["hyperparams"])
    # The same command does not run finished trials again; a larger budget adds the rest.
    assert len(tune_rl(args)["trials"]) == 2
    more = tune_rl(TuneRLArgs(**{**args.__dict__, "trials": 3}))
    assert len(more["trials"]) == 3
    assert len(list((tmp_path / "study" / "trials").iterdir())) == 3
