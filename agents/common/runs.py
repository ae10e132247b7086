"""Reading run folders and saved models (what train writes and evaluate reads).

A run folder holds ``config.json`` (what resume and evaluate read), ``model_card.json``
and ``README.md``, ``checkpoints/step_XXXXXXXXX.zip`` (+ ``_replay.pkl`` for off-policy
algorithms) and ``model.zip``; see :mod:`agents.train` for how they are written.
"""

from __future__ import annotations

import dataclasses
import json
import re
import zipfile
from pathlib import Path
from typing import Any

from agents.common.registry import is_off_policy

#: The run's arguments, resolved settings, versions and command line.
RUN_CONFIG = "config.json"
#: Files of a run folder that describe the trained agent.
MODEL_CARD = "model_card.json"
RUN_README = "README.md"

CHECKPOINT = re.compile(r"^step_(\d+)\.zip$")
REPLAY = re.compile(r"^step_(\d+)_replay\.pkl$")


def replay_path(checkpoint: Path) -> Path:
    """Replay-buffer file that goes with an off-policy checkpoint.

    :param checkpoint: a ``step_*.zip`` checkpoint.
    """
    return checkpoint.with_name(checkpoint.stem + "_replay.pkl")


def run_algo(run_dir: Path) -> str | None:
    """The algorithm a run folder's config.json names (None: unreadable).

    :param run_dir: a run folder.
    """
    try:
        return str(json.loads((run_dir / RUN_CONFIG).read_text())["args"]["algo"])
    except (OSError, KeyError, TypeError, ValueError):
        return None


def latest_checkpoint(run_dir: str | Path, resumable: bool = True) -> Path | None:
    """The checkpoint with the most steps in a run folder, or None.

    :param run_dir: a run folder.
    :param resumable: for off-policy runs (SAC; from the run's config.json, else: any
        replay buffer in the folder), only checkpoints whose replay buffer exists — what
        resume needs. ``False``: any checkpoint (each zip is complete: written
        atomically), e.g. to evaluate it.
    """
    ckpt_dir = Path(run_dir) / "checkpoints"
    found = []
    for p in ckpt_dir.glob("step_*.zip"):
        m = CHECKPOINT.match(p.name)
        if m:
            found.append((int(m.group(1)), p))
    if resumable:
        algo = run_algo(Path(run_dir))
        needs_replay = (
            is_off_policy(algo) if algo is not None else any(ckpt_dir.glob("step_*_replay.pkl"))
        )
        if needs_replay:
            found = [(n, p) for n, p in found if replay_path(p).is_file()]
    return max(found)[1] if found else None


def saved_timesteps(path: str | Path) -> int | None:
    """``num_timesteps`` stored in a saved model's ``data`` (None: unreadable).

    :param path: a ``.zip`` written by ``model.save``.
    """
    try:
        with zipfile.ZipFile(path) as zf:
            return int(json.loads(zf.read("data"))["num_timesteps"])
    except (OSError, KeyError, TypeError, ValueError, zipfile.BadZipFile):
        return None


def run_model_path(run_dir: str | Path) -> Path | None:
    """The model of a run folder: ``model.zip``, or the newest checkpoint when training
    was interrupted (no ``model.zip``, or a resumed run stopped past it); None if neither.

    :param run_dir: a run folder.
    """
    model = Path(run_dir) / "model.zip"
    ckpt = latest_checkpoint(run_dir, resumable=False)
    if not model.is_file():
        return ckpt
    if ckpt is not None:
        ckpt_steps = int(CHECKPOINT.match(ckpt.name).group(1))  # type: ignore[union-attr]
        model_steps = saved_timesteps(model)
        if model_steps is not None and ckpt_steps > model_steps:
            return ckpt
    return model


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """A run folder's ``config.json``.

    :param run_dir: a run folder.
    :raises FileNotFoundError: not a folder, or no config.json in it.
    :raises ValueError: config.json is not a run config.
    """
    folder = Path(run_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"run folder not found: {str(run_dir)!r}")
    cfg = folder / RUN_CONFIG
    if not cfg.is_file():
        raise FileNotFoundError(
            f"{str(run_dir)!r} is not a run folder: no config.json in it (train writes one)"
        )
    try:
        config = json.loads(cfg.read_text())
        for value in (config["args"]["env_id"], config["args"]["algo"], config["env_kwargs"]):
            if value is None:
                raise TypeError("null value")
    except (ValueError, KeyError, TypeError) as err:
        raise ValueError(
            f"{str(cfg)!r} is not a run config (needs args.env_id, args.algo, env_kwargs): "
            f"{type(err).__name__}: {err}"
        ) from None
    return config


def run_dir_of(path: Path) -> Path | None:
    """Training run folder of a model file (holding config.json), if any.

    :param path: model path.
    """
    for folder in (path.parent, path.parent.parent):
        if (folder / RUN_CONFIG).is_file():
            return folder
    return None


def read_model_data(spec: str, path: Path) -> dict[str, Any]:
    """The ``data`` entry of a model zip written by SB3's ``save``.

    :param spec: the agent as given (for messages).
    :param path: the zip.
    :raises ValueError: not a zip, no ``data`` entry, or one that is not SB3's JSON.
    """
    what = "a model saved by Stable-Baselines3 (model.save / train) is a .zip with 'data'"
    if not zipfile.is_zipfile(path):
        raise ValueError(f"agent {spec!r}: {str(path)!r} is not a zip file ({what})")
    try:
        with zipfile.ZipFile(path) as zf:
            names = zf.namelist()
            if "data" not in names:
                raise ValueError(
                    f"agent {spec!r}: {str(path)!r} is not a Stable-Baselines3 model: no "
                    f"'data' entry (it holds {names[:5]}; {what})"
                )
            data = json.loads(zf.read("data"))
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(
            f"agent {spec!r}: {str(path)!r} is not a readable Stable-Baselines3 model "
            f"({type(err).__name__}: {' '.join(str(err).split())})"
        ) from None
    if not isinstance(data, dict) or "policy_class" not in data:
        raise ValueError(
            f"agent {spec!r}: {str(path)!r} is not a Stable-Baselines3 model: its 'data' "
            f"entry has no policy_class"
        )
    return data


def algo_of_model_data(data: dict[str, Any]) -> str:
    """Algorithm of a saved SB3 model from its ``data`` entry (SB3 stores no algorithm
    name: it is told by the policy class and the saved hyperparameters).

    :param data: :func:`read_model_data`.
    """
    policy = json.dumps(data.get("policy_class", ""))
    if "MultiHead" in policy:
        return "shaped_ppo"
    if "tau" in data or "SAC" in policy:
        return "sac"
    if "clip_range" in data:
        return "ppo"
    return "a2c"


def json_ready(value: Any) -> Any:
    """``value`` as JSON can hold it: dicts and sequences item by item, anything JSON
    cannot encode as its ``repr``.

    :param value: a setting.
    """
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return repr(value)
    return value


def config_to_dict(config: Any) -> dict[str, Any]:
    """JSON-ready form of a config dataclass with every nested setting resolved (its
    ``to_dict`` if it has one, else :func:`dataclasses.asdict`).

    :param config: a dataclass instance (an env's config, :class:`ShapingConfig`, ...).
    """
    data = config.to_dict() if hasattr(config, "to_dict") else dataclasses.asdict(config)
    return json_ready(data)
