"""RL Baselines3 Zoo support: shipped hyperparameter files, their generator, the native
vec env swap, the ``aegym:`` id prefix and (slow) real Zoo training runs."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
from stable_baselines3.common.env_util import make_vec_env as sb3_make_vec_env
from stable_baselines3.common.vec_env import DummyVecEnv, VecMonitor

import agents.zoo as zoo
from agents.common.envs import ENV_IDS, FAST_ENV_KWARGS, is_native
from agents.hyperparams import HYPERPARAMS, TRAIN_ENV_KWARGS, AlgoSettings, get_settings
from agents.train import TrainArgs

yaml = pytest.importorskip("yaml")
tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[1]
SM = "AEGym/SoundMatch-Easy-v1"


def _load(algo: str) -> dict:
    return yaml.safe_load((zoo.HYPERPARAMS_DIR / f"{algo}.yml").read_text())


def _eval_expression(text: str) -> dict:
    """Zoo ``eval``s ``policy_kwargs``; here only ``dict(...)`` of literals is accepted."""
    call = ast.parse(text, mode="eval").body
    assert isinstance(call, ast.Call) and isinstance(call.func, ast.Name)
    assert call.func.id == "dict" and not call.args
    return {kw.arg: ast.literal_eval(kw.value) for kw in call.keywords}


def test_zoo_algos_are_ours_without_shaped_ppo():
    assert zoo.ZOO_ALGOS == ("ppo", "sac", "a2c")
    with pytest.raises(ValueError, match="shaped_ppo"):
        zoo.zoo_hyperparams("shaped_ppo")
    with pytest.raises(ValueError, match="allowed: ppo, sac, a2c"):
        zoo.zoo_hyperparams("dqn")


@pytest.mark.parametrize("algo", zoo.ZOO_ALGOS)
def test_shipped_file_equals_generator(algo):
    shipped = (zoo.HYPERPARAMS_DIR / f"{algo}.yml").read_text()
    assert shipped == zoo.zoo_yaml(algo), "rerun `python -m agents zoo-hyperparams`"


def test_no_stale_or_extra_files():
    assert zoo.stale_zoo_files() == []
    shipped = sorted(p.name for p in zoo.HYPERPARAMS_DIR.glob("*.yml"))
    assert shipped == sorted(f"{a}.yml" for a in zoo.ZOO_ALGOS)


@pytest.mark.parametrize("algo", zoo.ZOO_ALGOS)
def test_shipped_values_match_agents_config(algo):
    data = _load(algo)
    assert list(data) == list(ENV_IDS)
    for env_id in ENV_IDS:
        entry = dict(data[env_id])
        settings = get_settings(env_id, algo)
        assert entry.pop("n_envs") == settings.n_envs
        assert entry.pop("n_timesteps") == TrainArgs().total_timesteps
        assert entry.pop("policy") == "MlpPolicy"
        assert entry.pop("env_kwargs") == dict(TRAIN_ENV_KWARGS) == {"target": "train"}
        assert entry.pop("normalize") is False
        assert entry.pop("vec_env_wrapper") == "agents.zoo.native_vec_env"
        assert _eval_expression(entry.pop("policy_kwargs")) == settings.kwargs["policy_kwargs"]
        rest = {k: v for k, v in settings.kwargs.items() if k != "policy_kwargs"}
        assert entry == rest
        # YAML 1.1 pitfalls: floats must load as floats ("3e-4" would be a string).
        for key, value in rest.items():
            assert type(entry[key]) is type(value), key


def test_generator_follows_the_config(monkeypatch):
    changed = {env: dict(per_algo) for env, per_algo in HYPERPARAMS.items()}
    old = changed[SM]["ppo"]
    changed[SM]["ppo"] = AlgoSettings(3, {**old.kwargs, "learning_rate": 1.5e-3})
    monkeypatch.setattr(zoo, "HYPERPARAMS", changed)
    entry = zoo.zoo_hyperparams("ppo")[SM]
    assert entry["n_envs"] == 3
    assert entry["learning_rate"] == 1.5e-3
    assert zoo.stale_zoo_files() == [zoo.HYPERPARAMS_DIR / "ppo.yml"]


def test_policy_kwargs_must_be_literals(monkeypatch):
    import torch

    changed = {env: dict(per_algo) for env, per_algo in HYPERPARAMS.items()}
    old = changed[SM]["a2c"]
    bad = {**old.kwargs, "policy_kwargs": {"net_arch": [8], "activation_fn": torch.nn.ReLU}}
    changed[SM]["a2c"] = AlgoSettings(old.n_envs, bad)
    monkeypatch.setattr(zoo, "HYPERPARAMS", changed)
    with pytest.raises(ValueError, match="only Python literals"):
        zoo.zoo_hyperparams("a2c")


def test_cli_writes_and_checks(tmp_path, capsys):
    from agents.__main__ import main

    assert main(["zoo-hyperparams", "--out", str(tmp_path)]) == 0
    for algo in zoo.ZOO_ALGOS:
        assert (tmp_path / f"{algo}.yml").read_text() == zoo.zoo_yaml(algo)
    assert main(["zoo-hyperparams", "--out", str(tmp_path), "--check"]) == 0
    (tmp_path / "sac.yml").write_text("# hand-edited\n")
    (tmp_path / "a2c.yml").unlink()
    capsys.readouterr()
    assert main(["zoo-hyperparams", "--out", str(tmp_path), "--check"]) == 1
    out = capsys.readouterr().out
    assert "sac.yml" in out and "a2c.yml" in out and "ppo.yml" not in out


def test_yml_files_are_package_data():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    patterns = config["tool"]["setuptools"]["package-data"]["agents"]
    for algo in zoo.ZOO_ALGOS:
        rel = Path("hyperparams") / f"{algo}.yml"
        assert any(rel.match(p) for p in patterns), (rel, patterns)


def test_zoo_extra_declared():
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    extra = config["project"]["optional-dependencies"]["zoo"]
    assert any(req.replace("-", "_").startswith("rl_zoo3") for req in extra)


def _zoo_like_venv(n_envs: int, seed: int, monitor_dir: Path | None) -> DummyVecEnv:
    """What rl_zoo3's ExperimentManager.create_envs builds before its vec_env_wrapper."""
    spec = gym.spec(SM)
    return sb3_make_vec_env(
        lambda **kw: spec.make(**kw),
        n_envs=n_envs,
        seed=seed,
        env_kwargs={**TRAIN_ENV_KWARGS, **FAST_ENV_KWARGS[SM]},
        monitor_dir=None if monitor_dir is None else str(monitor_dir),
    )


def test_native_vec_env_swaps_in_the_batched_env(tmp_path, one_thread):
    zoo_venv = _zoo_like_venv(2, seed=5, monitor_dir=tmp_path)
    venv = zoo.native_vec_env(zoo_venv)
    assert isinstance(venv, VecMonitor) and is_native(venv)
    assert venv.num_envs == 2
    assert venv.observation_space == zoo_venv.observation_space
    assert venv.action_space == zoo_venv.action_space
    # Env kwargs and seeds came over: the same first observations as Zoo's own env.
    reference = _zoo_like_venv(2, seed=5, monitor_dir=None)
    np.testing.assert_allclose(venv.reset(), reference.reset(), rtol=1e-5, atol=1e-6)
    reference.close()
    actions = np.zeros((2, *venv.action_space.shape), dtype=np.float32)
    infos = []
    for _ in range(gym.spec(SM).max_episode_steps):
        _, _, done, info = venv.step(actions)
        infos.extend(i for i, d in zip(info, done, strict=True) if d)
    venv.close()
    assert len(infos) == 2 and all(i["episode"]["l"] == 50 for i in infos)
    # Episodes go to Zoo's first monitor file.
    lines = (tmp_path / "0.monitor.csv").read_text().splitlines()
    assert lines[1] == "r,l,t" and len(lines) == 4


def test_native_vec_env_refuses_changed_spaces():
    spec = gym.spec(SM)
    kwargs = {**TRAIN_ENV_KWARGS, **FAST_ENV_KWARGS[SM]}
    zoo_venv = DummyVecEnv(
        [
            lambda: gym.wrappers.RescaleAction(
                spec.make(**kwargs), min_action=np.float32(0.0), max_action=np.float32(2.0)
            )
        ]
    )
    with pytest.raises(ValueError, match="other spaces"):
        zoo.native_vec_env(zoo_venv)


def test_aegym_prefix_needs_no_import():
    code = (
        "import sys, gymnasium as gym\n"
        "assert 'aegym' not in sys.modules\n"
        "env = gym.make('aegym:AEGym/SoundMatch-Easy-v1', duration_s=0.25)\n"
        "obs, _ = env.reset(seed=0)\n"
        "assert env.observation_space.contains(obs)\n"
        "obs, r, term, trunc, info = env.step(env.action_space.sample())\n"
        "vec = gym.make_vec('aegym:AEGym/SoundMatch-Easy-v1', num_envs=2,\n"
        "                   vectorization_mode='vector_entry_point', duration_s=0.25)\n"
        "print(env.spec.id, type(env.unwrapped).__name__, type(vec).__name__, 'distance' in info)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [
        "AEGym/SoundMatch-Easy-v1",
        "SoundMatchEnv",
        "AEGymVectorEnv",
        "True",
    ]


def test_zoo_knows_our_algos():
    rl_zoo3_utils = pytest.importorskip("rl_zoo3.utils")
    assert set(zoo.ZOO_ALGOS) <= set(rl_zoo3_utils.ALGOS)
    assert "shaped_ppo" not in rl_zoo3_utils.ALGOS


ZOO_RUNS = [("ppo", env_id) for env_id in ENV_IDS] + [("sac", SM), ("a2c", SM)]


@pytest.mark.slow
@pytest.mark.parametrize(("algo", "env_id"), ZOO_RUNS)
def test_zoo_trains_with_shipped_file(tmp_path, algo, env_id):
    pytest.importorskip("rl_zoo3")
    from stable_baselines3 import A2C, PPO, SAC

    env_kwargs = [f"{k}:{v!r}" for k, v in {**TRAIN_ENV_KWARGS, **FAST_ENV_KWARGS[env_id]}.items()]
    cmd = [
        sys.executable, "-m", "rl_zoo3.train",
        "--algo", algo, "--env", env_id, "--gym-packages", "aegym",
        "--conf-file", str(zoo.HYPERPARAMS_DIR / f"{algo}.yml"),
        "-n", "200", "--seed", "0", "--device", "cpu", "--num-threads", "1",
        "--eval-freq", "100", "--eval-episodes", "1",
        "-f", str(tmp_path / "logs"),
        "--env-kwargs", *env_kwargs,
    ]  # fmt: skip
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    name = env_id.replace("/", "-")
    run_dir = tmp_path / "logs" / algo / f"{name}_1"
    model_path = run_dir / f"{name}.zip"
    assert model_path.is_file(), out.stdout[-3000:]
    assert (run_dir / "evaluations.npz").is_file()  # the eval env went through the swap too
    model = {"ppo": PPO, "sac": SAC, "a2c": A2C}[algo].load(model_path, device="cpu")
    settings = get_settings(env_id, algo)
    assert model.n_envs == settings.n_envs
    assert model.num_timesteps >= 200
    assert model.gamma == settings.kwargs["gamma"]
    if algo != "sac":
        assert model.n_steps == settings.kwargs["n_steps"]
    for key, value in settings.kwargs["policy_kwargs"].items():
        assert model.policy_kwargs[key] == value, key
    if algo == "ppo":  # every sub-env finished an episode within the first rollout
        # The native env's VecMonitor writes all episodes to Zoo's first monitor file.
        rows = [len(p.read_text().splitlines()) - 2 for p in sorted(run_dir.glob("*.monitor.csv"))]
        assert len(rows) == settings.n_envs
        assert rows[0] >= settings.n_envs and rows[1:] == [0] * (settings.n_envs - 1)
