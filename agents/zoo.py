"""RL Baselines3 Zoo support: hyperparameter files generated from :mod:`agents.hyperparams`.

``agents/hyperparams/{ppo,sac,a2c}.yml`` are Zoo ``--conf-file`` files holding the same
values as ``agents``' own config (:data:`agents.hyperparams.HYPERPARAMS`), one top-level
key per env id::

    python -m rl_zoo3.train --algo ppo --env AEGym/SoundMatch-Easy-v1 --gym-packages aegym \\
        --conf-file agents/hyperparams/ppo.yml --num-threads 1 --device cpu

(``--num-threads 1``, as ``agents train``: on few CPU cores torch's default threads
compete with the env's own torch work; the files cannot set it.)

They are written by ``python -m agents zoo-hyperparams --out agents/hyperparams/``
(``--check`` compares instead of writing); a test keeps the shipped files equal to what
the generator produces. Shaped PPO is ours, not a Zoo algorithm, so it has no file.

Vectorization: Zoo builds its own VecEnv of ``n_envs`` ``gym.make`` copies
(``DummyVecEnv``, or ``SubprocVecEnv`` with ``--vec-env subproc``). The files name
:func:`native_vec_env` as Zoo's ``vec_env_wrapper``: it swaps that VecEnv for aegym's
native batched env (one torch core renders every sub-env per step, what ``agents train``
uses too) with the same id, env kwargs, size and seeds.
"""

from __future__ import annotations

import argparse
import ast
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stable_baselines3.common.vec_env import DummyVecEnv, VecEnv, VecMonitor

from agents.common.registry import ALGOS
from agents.hyperparams import HYPERPARAMS, TRAIN_ENV_KWARGS
from agents.train import TrainArgs

#: Our algorithms that Zoo can train (registered with ``zoo=True``), in registry order.
ZOO_ALGOS: tuple[str, ...] = tuple(name for name, spec in ALGOS.items() if spec.zoo)

#: Folder of the shipped Zoo files (the ``agents.hyperparams`` package).
HYPERPARAMS_DIR = Path(__file__).resolve().parent / "hyperparams"

#: Dotted name of :func:`native_vec_env` as Zoo's ``vec_env_wrapper`` reads it.
NATIVE_VEC_ENV_WRAPPER = f"{__name__}.native_vec_env"

#: Keys of the SB3 constructor that Zoo expects as a Python expression string.
_EXPRESSION_KEYS = ("policy_kwargs", "replay_buffer_kwargs")

_HEADER = (
    "# RL Baselines3 Zoo hyperparameters for aegym ({algo}), generated from\n"
    "# agents/hyperparams/__init__.py by `python -m agents zoo-hyperparams`: do not edit.\n"
    "# python -m rl_zoo3.train --algo {algo} --env AEGym/SoundMatch-Easy-v1 \\\n"
    "#     --gym-packages aegym \\\n"
    "#     --conf-file agents/hyperparams/{algo}.yml --num-threads 1 --device cpu\n"
)


def _check_zoo_algo(algo: str) -> str:
    if algo not in ZOO_ALGOS:
        raise ValueError(f"no Zoo hyperparameters for {algo!r}; allowed: {', '.join(ZOO_ALGOS)}")
    return algo


def _literal(name: str, value: Any) -> str:
    text = repr(value)
    try:
        same = ast.literal_eval(text) == value
    except (ValueError, SyntaxError):
        same = False
    if not same:
        raise ValueError(f"{name} must hold only Python literals to go into a Zoo file: {text}")
    return text


def _expression(name: str, value: dict[str, Any]) -> str:
    """``value`` as the ``dict(key=value, ...)`` string Zoo ``eval``s (its files' style);
    only identifier keys and literal values are allowed."""
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and k.isidentifier() for k in value
    ):
        raise ValueError(f"{name} must be a dict with identifier keys, got {value!r}")
    items = ", ".join(f"{k}={_literal(f'{name}[{k!r}]', v)}" for k, v in value.items())
    return f"dict({items})"


def zoo_hyperparams(algo: str) -> dict[str, dict[str, Any]]:
    """Zoo's hyperparameters of ``algo`` for every env id (the content of ``{algo}.yml``).

    Per env: ``n_envs``, ``n_timesteps`` (``agents train``'s default budget), ``policy``,
    ``env_kwargs`` (the train target set, as ``agents train``), no normalization,
    :func:`native_vec_env` as ``vec_env_wrapper``, then the SB3 constructor arguments
    with ``policy_kwargs`` as a Python dict expression string.

    :param algo: one of :data:`ZOO_ALGOS`.
    :raises ValueError: an algorithm Zoo cannot train (``shaped_ppo``) or unknown.
    """
    _check_zoo_algo(algo)
    out: dict[str, dict[str, Any]] = {}
    for env_id, per_algo in HYPERPARAMS.items():
        settings = per_algo[algo]
        entry: dict[str, Any] = {
            "n_envs": settings.n_envs,
            "n_timesteps": TrainArgs().total_timesteps,
            "policy": "MlpPolicy",
            "env_kwargs": dict(TRAIN_ENV_KWARGS),
            "normalize": False,
            "vec_env_wrapper": NATIVE_VEC_ENV_WRAPPER,
        }
        for key, value in settings.kwargs.items():
            entry[key] = _expression(key, value) if key in _EXPRESSION_KEYS else value
        out[env_id] = entry
    return out


def zoo_yaml(algo: str) -> str:
    """The text of ``{algo}.yml``: a header comment, then :func:`zoo_hyperparams`.

    :param algo: one of :data:`ZOO_ALGOS`.
    """
    import yaml  # PyYAML: installed with rl_zoo3 (the ``zoo`` extra) and the ``dev`` one

    blocks = [
        yaml.safe_dump({env_id: entry}, sort_keys=False, default_flow_style=False)
        for env_id, entry in zoo_hyperparams(algo).items()
    ]
    return _HEADER.format(algo=algo) + "\n" + "\n".join(blocks)


def write_zoo_hyperparams(out_dir: str | Path = HYPERPARAMS_DIR) -> list[Path]:
    """Write ``{algo}.yml`` for every algorithm of :data:`ZOO_ALGOS` into ``out_dir``.

    :param out_dir: destination folder (created if missing).
    :return: the files written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for algo in ZOO_ALGOS:
        path = out / f"{algo}.yml"
        path.write_text(zoo_yaml(algo))
        written.append(path)
    return written


def stale_zoo_files(out_dir: str | Path = HYPERPARAMS_DIR) -> list[Path]:
    """Files of ``out_dir`` that are missing or differ from what the generator writes.

    :param out_dir: folder holding the Zoo files.
    """
    out = Path(out_dir)
    stale = []
    for algo in ZOO_ALGOS:
        path = out / f"{algo}.yml"
        if not path.is_file() or path.read_text() != zoo_yaml(algo):
            stale.append(path)
    return stale


def native_vec_env(venv: VecEnv) -> VecEnv:
    """Zoo ``vec_env_wrapper``: replace Zoo's VecEnv of ``gym.make`` copies by aegym's
    native batched env with the same env id, env kwargs, number of envs and seeds.

    Zoo's VecEnv is closed. A ``VecMonitor`` on top records episode statistics; when
    Zoo's first sub-env wrote a monitor file (training env of a ``DummyVecEnv``), the
    ``VecMonitor`` writes all episodes there instead (the other sub-envs' files keep
    only their header). Use it without ``env_wrapper``: per-env wrappers do not carry
    over, and a changed observation or action space raises.

    :param venv: the VecEnv Zoo built.
    :raises ValueError: spaces of the native env differ from ``venv``'s.
    """
    from aegym.vector import make_sb3_vec_env

    spec = venv.get_attr("spec", [0])[0]
    n_envs = venv.num_envs
    seeds = list(getattr(venv, "_seeds", [None] * n_envs))
    monitor_file = None
    if isinstance(venv, DummyVecEnv):
        writer = getattr(venv.envs[0], "results_writer", None)
        if writer is not None:
            monitor_file = writer.file_handler.name
    obs_space, act_space = venv.observation_space, venv.action_space
    venv.close()
    native = make_sb3_vec_env(spec.id, n_envs, seed=0, **spec.kwargs)
    if native.observation_space != obs_space or native.action_space != act_space:
        native.close()
        raise ValueError(
            f"native vector env of {spec.id} has other spaces than Zoo's env "
            "(an env_wrapper changed them?); drop vec_env_wrapper or env_wrapper"
        )
    native._seeds = seeds
    return VecMonitor(native, filename=monitor_file)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m agents zoo-hyperparams [--out DIR] [--check]``.

    :param argv: command-line words (None: ``sys.argv[1:]``).
    :return: 0, or 1 when ``--check`` finds stale files.
    """
    parser = argparse.ArgumentParser(
        prog="python -m agents zoo-hyperparams",
        description="Write RL Baselines3 Zoo hyperparameter files from agents/hyperparams.",
    )
    parser.add_argument(
        "--out", default=str(HYPERPARAMS_DIR), help="folder for {algo}.yml (default: %(default)s)"
    )
    parser.add_argument(
        "--check", action="store_true", help="write nothing; exit 1 if a file is stale"
    )
    args = parser.parse_args(argv)
    if args.check:
        stale = stale_zoo_files(args.out)
        for path in stale:
            print(f"stale: {path} (rerun python -m agents zoo-hyperparams)")
        return 1 if stale else 0
    for path in write_zoo_hyperparams(args.out):
        print(f"wrote {path}")
    return 0
