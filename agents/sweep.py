"""Leaderboard sweeps on Ray: every (env, agent, training seed) cell trained and
evaluated as one Ray task, locally by default or on a cluster by address.

``python -m agents sweep --env-ids AEGym/SoundMatch-Easy-v1 --agents ae static random ppo
--seeds 0 1 2 --total-timesteps 30000 --n-targets 24 --eval-seeds 0 1``

``python -m agents sweep --grid grid.yml --address auto`` (a YAML or JSON file with the
fields of :class:`SweepGrid`; options given on the command line override the file's).

The grid (:class:`SweepGrid`, frozen and validated, saved resolved as ``grid.json``) is
env ids × agents × training seeds. An agent is a baseline by name
(:func:`agents.make_baseline`: one cell per env, baselines have no training seed) or a
trainable algorithm with its hyperparameters (:class:`AgentSpec`: one cell per env and
seed). A cell (:class:`Cell`) trains with :func:`agents.train.train` (trainable agents)
and evaluates with :func:`agents.evaluate.evaluate` on every target set of the grid —
the same functions and the same run-folder layout as ``python -m agents train`` /
``evaluate``, so a cell's numbers are the numbers those commands give for the same
seeds (``tests/test_agents_sweep.py`` checks the aggregated table against a sequential
run). The sweep folder::

    {output_dir}/grid.json                     the resolved grid
    {output_dir}/cells/{cell id}/              a run folder (config.json, checkpoints/,
                                               TensorBoard, model.zip, model card) ...
    {output_dir}/cells/{cell id}/eval/{set}/   ... its evaluation (results.json, report)
    {output_dir}/cells/{cell id}/done.json     the finished marker (written atomically)
    {output_dir}/leaderboard/{env}__{set}/     per env and target set: results.json,
                                               results.md, plots, report.html
    {output_dir}/leaderboard.json|.md|.html    every table, the finished, missing and
                                               failed cells

Scale-out: each cell is a Ray task declaring ``cpus_per_cell`` CPUs (and
``gpus_per_cell`` GPUs, a fraction allowed; training itself runs on the CPU). Without an
address Ray starts on this machine with the available cores; ``address="auto"`` or
``"ray://host:10001"`` joins a running cluster, whose nodes need aegym installed and
``output_dir`` on storage they all see.

Resume and faults: a cell whose ``done.json`` holds the same cell spec is not run
again; a task whose worker dies is retried (Ray ``max_retries``) and resumes training
from the run's newest checkpoint (``train --resume``: exact, see :mod:`agents.train`).
A cell that raises is not retried; the sweep finishes the others. The leaderboard
counts only finished cells and lists the missing ones. Trainable agents pool their
finished training seeds into one row (as ``evaluate --agents runA,runB`` does), and the
statistics are those of :mod:`agents.evaluate` (:func:`agents.evaluate.finish_result`).

Ray is optional: ``pip install -e ".[ray]"``. It is imported only inside this module's
functions; nothing else in aegym or agents imports it.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import html
import importlib
import json
import os
import re
import shutil
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from aegym.audio_io import atomic_write_bytes
from agents.baselines import BASELINE_NAMES, check_baseline
from agents.common.checks import check_count
from agents.common.cli import build_parser, keep_freed_memory
from agents.common.envs import check_env_id, check_env_kwargs
from agents.common.registry import ALGOS
from agents.common.runs import RUN_CONFIG, latest_checkpoint, saved_timesteps
from agents.evaluate import (
    AgentResult,
    EvalArgs,
    EvalResult,
    agent_from_dict,
    evaluate,
    finish_result,
    summarize_metrics,
)
from agents.evaluate import validate_args as validate_eval_args
from agents.leaderboard import summarize
from agents.report import format_comparisons, markdown_to_html_table, write_report
from agents.train import TrainArgs, check_settings, train

#: What to install when Ray is missing.
RAY_INSTALL = 'pip install -e ".[ray]"'

#: The finished marker of a cell (in its folder).
DONE = "done.json"
#: The cell spec a cell folder was started with (a changed spec starts afresh).
CELL_SPEC = "cell.json"
#: Test hook: a cell whose id this names (``*``: every trainable cell) kills its worker
#: (``os._exit``) right after writing its first checkpoint, once per cell folder.
CRASH_ENV = "AEGYM_SWEEP_CRASH_AFTER_CHECKPOINT"
_CRASH_FIRED = ".crash-hook-fired"

_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def import_ray() -> Any:
    """The ``ray`` module, or an ImportError naming the install command.

    :raises ImportError: Ray is not installed.
    """
    try:
        import ray
    except ImportError as err:
        raise ImportError(
            f"agents sweep runs its cells on Ray, which is not installed: {RAY_INSTALL} "
            f"(or pip install 'ray[tune]>=2.40,<3')"
        ) from err
    return ray


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "set"


def _check_ints(name: str, values: Any) -> tuple[int, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ValueError(f"{name} must be a non-empty list of integers, got {values!r}")
    out = tuple(check_count(f"{name} entry", v, 0) for v in values)
    if len(set(out)) != len(out):
        raise ValueError(f"{name} must not repeat a value, got {list(values)!r}")
    return out


def _check_strs(name: str, values: Any) -> tuple[str, ...]:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ValueError(f"{name} must be a non-empty list of strings, got {values!r}")
    out = tuple(values)
    if not all(isinstance(v, str) and v for v in out) or len(set(out)) != len(out):
        raise ValueError(f"{name} must hold distinct non-empty strings, got {list(values)!r}")
    return out


@dataclass(frozen=True)
class AgentSpec:
    """One agent of the grid: a baseline by name, or a trainable algorithm with its
    hyperparameters.

    :param agent: a baseline name (:data:`agents.baselines.BASELINE_NAMES`) or an
        algorithm (:data:`agents.ALGOS`).
    :param name: its row in the leaderboard and part of its cells' ids (letters, digits,
        ``_.-``; default: ``agent``).
    :param hyperparams: SB3 constructor overrides (``train --hyperparams``).
    :param shaping: shaped PPO switches (``train --shaping``).
    :param n_envs: parallel training envs (None: the algorithm's setting for the env).
    """

    agent: str
    name: str = ""
    hyperparams: dict[str, Any] = field(default_factory=dict)
    shaping: dict[str, Any] = field(default_factory=dict)
    n_envs: int | None = None

    def __post_init__(self) -> None:
        if self.agent not in BASELINE_NAMES and self.agent not in ALGOS:
            raise ValueError(
                f"agent {self.agent!r} is neither a baseline ({', '.join(BASELINE_NAMES)}) "
                f"nor a trainable algorithm ({', '.join(ALGOS)})"
            )
        if not self.name:
            object.__setattr__(self, "name", self.agent)
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise ValueError(
                f"agent name {self.name!r} must be letters, digits, '_', '.' or '-' "
                f"(it names the cells' folders)"
            )
        for key in ("hyperparams", "shaping"):
            value = getattr(self, key)
            if not isinstance(value, dict):
                raise ValueError(f"agent {self.name!r}: {key} must be a mapping, got {value!r}")
            if value and self.trainable is False:
                raise ValueError(
                    f"agent {self.name!r}: {key} only apply to trainable algorithms "
                    f"({', '.join(ALGOS)}), not the baseline {self.agent!r}"
                )
        if self.n_envs is not None:
            check_count(f"agent {self.name!r}: n_envs", self.n_envs, 1)

    @property
    def trainable(self) -> bool:
        """True for an algorithm (trained per seed), False for a baseline."""
        return self.agent in ALGOS

    @classmethod
    def parse(cls, value: str | Mapping[str, Any] | AgentSpec) -> AgentSpec:
        """From a name (``"ppo"``), a JSON object string or a mapping
        (``{"agent": "ppo", "name": "ppo-small", "hyperparams": {"n_steps": 64}}``).

        :param value: the agent as written in the grid.
        :raises ValueError: unknown keys, agent or bad values.
        """
        if isinstance(value, AgentSpec):
            return value
        if isinstance(value, str) and value.lstrip().startswith("{"):
            try:
                value = json.loads(value)
            except json.JSONDecodeError as err:
                raise ValueError(f"agent {value!r} is not a valid JSON object: {err}") from None
        if isinstance(value, str):
            return cls(value)
        if not isinstance(value, Mapping):
            raise ValueError(f"agent must be a name or a mapping, got {value!r}")
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(value) - set(allowed))
        if unknown or "agent" not in value:
            raise ValueError(
                f"agent {dict(value)!r}: needs 'agent'; unknown keys {unknown}; allowed: {allowed}"
            )
        return cls(**dict(value))


@dataclass(frozen=True)
class SweepGrid:
    """What a sweep computes: env ids × agents × training seeds, each cell trained for
    ``total_timesteps`` (trainable agents) and evaluated on every target set.

    :param env_ids: envs (``AEGym/...`` ids).
    :param agents: baselines and trainable algorithms (:class:`AgentSpec`; names,
        JSON strings and mappings are parsed).
    :param seeds: training seeds (trainable agents only; baselines are deterministic
        given the episodes and play once).
    :param total_timesteps: training budget of every trainable cell (env steps).
    :param target_sets: instance sets evaluated on (``test``, ``train`` or a WAV path).
    :param n_targets: targets per set, spread evenly (None: all).
    :param eval_seeds: episode seeds; every target is played once per seed.
    :param env_kwargs: env keyword arguments for training and evaluation (every env).
    :param checkpoint_every: env steps between training checkpoints (what a retried
        cell resumes from).
    :param n_showcase: episodes rendered to images and WAVs in each cell's report.
    :param native_vec: aegym's native batched vector envs where available.
    """

    env_ids: tuple[str, ...] = ("AEGym/SoundMatch-Easy-v1",)
    agents: tuple[AgentSpec, ...] = (AgentSpec("ae"), AgentSpec("static"), AgentSpec("random"))
    seeds: tuple[int, ...] = (0, 1, 2)
    total_timesteps: int = 20_000
    target_sets: tuple[str, ...] = ("test",)
    n_targets: int | None = 12
    eval_seeds: tuple[int, ...] = (0,)
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    checkpoint_every: int = 10_000
    n_showcase: int = 0
    native_vec: bool = True

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "env_ids", _check_strs("env_ids", self.env_ids))
        if isinstance(self.agents, (str, Mapping)) or not self.agents:
            raise ValueError(f"agents must be a non-empty list, got {self.agents!r}")
        set_(self, "agents", tuple(AgentSpec.parse(a) for a in self.agents))
        names = [a.name for a in self.agents]
        if len(set(names)) != len(names):
            raise ValueError(f"agent names must be distinct (set 'name'), got {names}")
        set_(self, "seeds", _check_ints("seeds", self.seeds))
        set_(self, "eval_seeds", _check_ints("eval_seeds", self.eval_seeds))
        set_(self, "target_sets", _check_strs("target_sets", self.target_sets))
        check_count("total_timesteps", self.total_timesteps, 1)
        check_count("checkpoint_every", self.checkpoint_every, 1)
        check_count("n_showcase", self.n_showcase, 0)
        if self.n_targets is not None:
            check_count("n_targets", self.n_targets, 1)
        if not isinstance(self.env_kwargs, dict):
            raise ValueError(f"env_kwargs must be a mapping, got {self.env_kwargs!r}")
        for env_id in self.env_ids:
            check_env_id(env_id)
            check_env_kwargs(env_id, self.env_kwargs)
            baselines = [a.agent for a in self.agents if not a.trainable]
            for name in baselines:
                check_baseline(name, env_id)
            for target_set in self.target_sets:
                validate_eval_args(self._eval_args(env_id, baselines or ["static"], target_set))
            for spec in self.agents:
                if spec.trainable:
                    check_settings(self._train_args(env_id, spec, self.seeds[0], "."))

    def _train_args(self, env_id: str, spec: AgentSpec, seed: int, output_dir: str) -> TrainArgs:
        return TrainArgs(
            env_id=env_id,
            algo=spec.agent,
            total_timesteps=self.total_timesteps,
            seed=seed,
            output_dir=output_dir,
            env_kwargs=dict(self.env_kwargs),
            n_envs=spec.n_envs,
            checkpoint_every=self.checkpoint_every,
            native_vec=self.native_vec,
            hyperparams=dict(spec.hyperparams),
            shaping=dict(spec.shaping),
            progress=False,
            torch_threads=1,
        )

    def _eval_args(
        self, env_id: str, agents: list[str], target_set: str, output_dir: str = "eval"
    ) -> EvalArgs:
        return EvalArgs(
            env_id=env_id,
            agents=agents,
            target_set=target_set,
            n_targets=self.n_targets,
            seeds=list(self.eval_seeds),
            env_kwargs=dict(self.env_kwargs),
            output_dir=output_dir,
            n_showcase=self.n_showcase,
            native_vec=self.native_vec,
            torch_threads=1,
        )

    def cells(self) -> list[Cell]:
        """Every cell, env by env, agent by agent (in grid order), seed by seed."""
        return [
            c
            for env_id in self.env_ids
            for spec in self.agents
            for c in self.cells_of(env_id, spec)
        ]

    def cells_of(self, env_id: str, spec: AgentSpec) -> list[Cell]:
        """The cells of one agent on one env (one per seed if trainable, else one).

        :param env_id: env id.
        :param spec: an agent of the grid.
        """
        seeds: Sequence[int | None] = self.seeds if spec.trainable else (None,)
        return [Cell(self, env_id, spec, seed) for seed in seeds]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``grid.json``; :meth:`from_dict` reads it back)."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SweepGrid:
        """A grid from a mapping (a parsed YAML/JSON file), validated.

        :param data: fields of :class:`SweepGrid`.
        :raises ValueError: unknown fields (naming the allowed ones) or bad values.
        """
        if not isinstance(data, Mapping):
            raise ValueError(f"a grid must be a mapping of SweepGrid fields, got {data!r}")
        allowed = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(data) - set(allowed))
        if unknown:
            raise ValueError(f"unknown grid fields {unknown}; allowed: {allowed}")
        values = dict(data)
        for key in ("env_ids", "agents", "seeds", "target_sets", "eval_seeds"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        return cls(**values)


@dataclass(frozen=True)
class Cell:
    """One unit of work: an agent on an env (and a training seed if trainable).

    :param grid: the grid it belongs to (budget, evaluation settings).
    :param env_id: env id.
    :param spec: the agent.
    :param seed: training seed (None for baselines).
    """

    grid: SweepGrid
    env_id: str
    spec: AgentSpec
    seed: int | None

    @property
    def cell_id(self) -> str:
        """``{env}__{agent name}[__{seed}]`` (``/`` in the env id becomes ``-``)."""
        base = f"{self.env_id.replace('/', '-')}__{self.spec.name}"
        return base if self.seed is None else f"{base}__{self.seed}"

    def to_dict(self) -> dict[str, Any]:
        """What the cell computes (compared with ``done.json`` to skip it on restart)."""
        g = self.grid
        out = {
            "cell_id": self.cell_id,
            "env_id": self.env_id,
            "agent": dataclasses.asdict(self.spec),
            "seed": self.seed,
            "total_timesteps": g.total_timesteps if self.spec.trainable else None,
            "checkpoint_every": g.checkpoint_every if self.spec.trainable else None,
            "target_sets": list(g.target_sets),
            "n_targets": g.n_targets,
            "eval_seeds": list(g.eval_seeds),
            "env_kwargs": g.env_kwargs,
            "n_showcase": g.n_showcase,
            "native_vec": g.native_vec,
        }
        return json.loads(json.dumps(out))


def load_grid(path: str | Path) -> SweepGrid:
    """A grid from a YAML (``.yml``/``.yaml``) or JSON file.

    :param path: the file.
    :raises FileNotFoundError: no such file.
    :raises ValueError: unreadable content, unknown fields, bad values.
    """
    file = Path(path)
    if not file.is_file():
        raise FileNotFoundError(f"grid file not found: {str(path)!r}")
    text = file.read_text()
    if file.suffix.lower() in (".yml", ".yaml"):
        try:
            import yaml
        except ImportError:
            raise ImportError("reading a YAML grid needs pyyaml: pip install pyyaml") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as err:
            raise ValueError(f"grid file {str(path)!r} is not valid YAML: {err}") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as err:
            raise ValueError(f"grid file {str(path)!r} is not valid JSON: {err}") from None
    return SweepGrid.from_dict(data)


def _write_json(path: Path, data: Any) -> Path:
    return atomic_write_bytes(path, json.dumps(data, indent=1).encode())


def read_done(cell: Cell, cells_dir: Path) -> dict[str, Any] | None:
    """A cell's ``done.json`` if it finished with the same spec, else None.

    :param cell: the cell.
    :param cells_dir: the sweep's ``cells`` folder.
    """
    try:
        done = json.loads((cells_dir / cell.cell_id / DONE).read_text())
    except (OSError, ValueError):
        return None
    return done if done.get("cell") == cell.to_dict() else None


@contextlib.contextmanager
def _crash_hook(cell: Cell, cell_dir: Path) -> Iterator[None]:
    """Test hook (:data:`CRASH_ENV`): kill this process right after the cell's first
    checkpoint, once per cell folder — a worker that dies mid-training."""
    wanted = os.environ.get(CRASH_ENV)
    fired = cell_dir / _CRASH_FIRED
    if wanted not in (cell.cell_id, "*") or not cell.spec.trainable or fired.exists():
        yield
        return
    # The module itself: ``agents.train`` as an attribute is the function.
    train_module = importlib.import_module("agents.train")
    original = train_module.save_checkpoint

    def save_then_die(model: Any, ckpt_dir: Path) -> Path:
        original(model, ckpt_dir)
        fired.touch()
        os._exit(17)

    train_module.save_checkpoint = save_then_die
    try:
        yield
    finally:
        train_module.save_checkpoint = original


def _train_cell(cell: Cell, cell_dir: Path) -> dict[str, Any]:
    """Train a trainable cell, resuming from its newest checkpoint when a previous
    attempt left one; returns what was done."""
    args = cell.grid._train_args(cell.env_id, cell.spec, int(cell.seed or 0), str(cell_dir.parent))
    args = replace(args, run_name=cell_dir.name)
    model = cell_dir / "model.zip"
    if model.is_file() and (saved_timesteps(model) or 0) >= cell.grid.total_timesteps:
        return {"trained": "already", "num_timesteps": saved_timesteps(model)}
    ckpt = latest_checkpoint(cell_dir) if (cell_dir / RUN_CONFIG).is_file() else None
    if ckpt is None and (cell_dir / RUN_CONFIG).exists():
        # Died before its first checkpoint: nothing to resume, start the run afresh.
        for child in cell_dir.iterdir():
            if child.name not in (CELL_SPEC, _CRASH_FIRED):
                shutil.rmtree(child) if child.is_dir() else child.unlink()
    with _crash_hook(cell, cell_dir):
        if ckpt is not None:
            resumed = replace(args, resume=str(cell_dir))
            result = train(resumed)
            return {"trained": "resumed", "from": str(ckpt), "num_timesteps": result.num_timesteps}
        result = train(args)
    return {"trained": "fresh", "num_timesteps": result.num_timesteps}


def run_cell(cell: Cell, cells_dir: str | Path) -> dict[str, Any]:
    """Train (if trainable) and evaluate one cell, write its ``done.json`` (atomically)
    and return it. What a Ray task runs; callable without Ray too.

    :param cell: the cell.
    :param cells_dir: the sweep's ``cells`` folder (shared by every node).
    """
    keep_freed_memory()  # a worker process runs many cells
    t0 = time.perf_counter()
    cell_dir = Path(cells_dir) / cell.cell_id
    spec = cell.to_dict()
    try:
        started = json.loads((cell_dir / CELL_SPEC).read_text())
    except (OSError, ValueError):
        started = None
    if started != spec and cell_dir.exists():
        shutil.rmtree(cell_dir)  # a different cell (the grid changed): start afresh
    _write_json(cell_dir / CELL_SPEC, spec)
    training = _train_cell(cell, cell_dir) if cell.spec.trainable else None
    agent = str(cell_dir) if cell.spec.trainable else cell.spec.agent
    results: dict[str, Any] = {}
    for target_set in cell.grid.target_sets:
        out = cell_dir / "eval" / _slug(target_set)
        result = evaluate(cell.grid._eval_args(cell.env_id, [agent], target_set, str(out)))
        data = result.to_dict()
        data.pop("showcase", None)
        results[target_set] = data
    done = {
        "cell": spec,
        "training": training,
        "results": results,
        "wall_s": time.perf_counter() - t0,
        "host": os.uname().nodename,
    }
    _write_json(cell_dir / DONE, done)
    return done


@dataclass
class SweepResult:
    """What :func:`sweep` did.

    :param output_dir: the sweep folder.
    :param cells: every cell id of the grid.
    :param ran: cells run by this call.
    :param skipped: cells already finished before it (not run again).
    :param failed: cell id -> error, for cells that raised or whose retries ran out.
    :param missing: cells without a finished marker after this call.
    :param boards: ``(env id, target set)`` -> the aggregated evaluation.
    :param wall_s: seconds this call took (Ray start-up included).
    """

    output_dir: Path
    cells: list[str]
    ran: list[str]
    skipped: list[str]
    failed: dict[str, str]
    missing: list[str]
    boards: dict[tuple[str, str], EvalResult]
    wall_s: float = 0.0


def _pool(spec: AgentSpec, entries: list[dict[str, Any]]) -> AgentResult:
    """One leaderboard row from the finished cells of one agent (their evaluation
    entries, in seed order): a baseline as evaluated, a trainable agent's seeds pooled
    as training runs (``run`` = k), exactly as ``evaluate --agents runA,runB`` does."""
    if not spec.trainable:
        return replace(agent_from_dict(entries[0]), label=spec.name)
    parts = [agent_from_dict(e) for e in entries]
    records = [replace(r, run=k) for k, a in enumerate(parts) for r in a.episodes]
    return AgentResult(
        spec.name,
        ",".join(a.source for a in parts),
        parts[0].algo,
        records,
        summarize_metrics(records),
        sum(a.wall_s for a in parts),
        parts[0].run_dir,
        len(parts),
        None,
    )


def aggregate(grid: SweepGrid, output_dir: str | Path) -> dict[tuple[str, str], EvalResult]:
    """The leaderboards of a sweep folder from its finished cells: per env and target
    set, one row per agent (finished seeds pooled), the statistics of
    :func:`agents.evaluate.finish_result`; each written with
    :func:`agents.report.write_report` into ``leaderboard/{env}__{set}/``.

    :param grid: the grid.
    :param output_dir: the sweep folder.
    :return: ``(env id, target set)`` -> evaluation; boards without a finished cell
        are left out.
    """
    root = Path(output_dir)
    boards: dict[tuple[str, str], EvalResult] = {}
    for env_id in grid.env_ids:
        finished = {
            spec.name: [
                d for c in grid.cells_of(env_id, spec) if (d := read_done(c, root / "cells"))
            ]
            for spec in grid.agents
        }
        for target_set in grid.target_sets:
            rows: list[AgentResult] = []
            meta: dict[str, Any] | None = None
            for spec in grid.agents:
                entries = [d["results"][target_set] for d in finished[spec.name]]
                if not entries:
                    continue
                meta = meta or entries[0]
                rows.append(_pool(spec, [e["agents"][0] for e in entries]))
            if meta is None:
                continue
            result = finish_result(
                EvalResult(
                    env_id,
                    target_set,
                    list(meta["target_indices"]),
                    list(meta["target_names"]),
                    list(meta["seeds"]),
                    dict(meta["env_kwargs"]),
                    rows,
                    int(meta["episode_limit"]),
                    float(meta["success_distance"]),
                    dict(meta["env_config"]),
                )
            )
            out = root / "leaderboard" / f"{_slug(env_id)}__{_slug(target_set)}"
            loaded = {a.label: (a.source, None, a.run_dir) for a in rows if a.run_dir}
            write_report(result, out, [], loaded)
            result.wall_s = sum(a.wall_s for a in rows)
            _write_json(out / "results.json", result.to_dict())
            boards[(env_id, target_set)] = result
    return boards


def board_summary(env_id: str, target_set: str, board: EvalResult) -> tuple[str, str, str]:
    """A board's heading, its table in the leaderboard's format and the computed
    who-wins sentence (:func:`agents.leaderboard.summarize`).

    :param env_id: the board's env.
    :param target_set: the board's target set.
    :param board: the board's evaluation.
    """
    tier, table, sentence = summarize(board, board.env_kwargs)
    title = f"{env_id} on {target_set}"
    if tier.name != "custom":
        title = f"{tier.title} — {title}"
    return title, table, sentence


def write_leaderboard(grid: SweepGrid, output_dir: str | Path, result: SweepResult) -> Path:
    """``leaderboard.json``, ``.md`` and ``.html``: every board in the leaderboard's
    format (:func:`agents.leaderboard.format_tier_table` and the computed who-wins
    sentence, as ``python -m agents leaderboard`` and the main job print them), its
    paired comparisons, and which cells finished, are missing or failed. Each board's
    folder keeps evaluate's full table (``results.md``, ``report.html``).

    :param grid: the grid.
    :param output_dir: the sweep folder.
    :param result: the sweep's outcome.
    :return: the JSON file.
    """
    root = Path(output_dir)
    boards = []
    md = [
        "# Leaderboard",
        "",
        f"{len(result.cells) - len(result.missing)} of {len(result.cells)} cells finished; "
        "value [95 % CI] as in `python -m agents leaderboard` (CIs resample targets and "
        "training runs; success rates, on in-domain tiers only, with exact Clopper–Pearson "
        "intervals).",
        "",
    ]
    page = [
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">',
        "<title>aegym leaderboard</title></head><body><h1>aegym leaderboard</h1>",
        f"<p>{html.escape(md[2])}</p>",
    ]
    for (env_id, target_set), board in result.boards.items():
        folder = root / "leaderboard" / f"{_slug(env_id)}__{_slug(target_set)}"
        title, table, sentence = board_summary(env_id, target_set, board)
        comparisons = format_comparisons(board)
        missing = [
            c.cell_id for spec in grid.agents for c in grid.cells_of(env_id, spec)
            if c.cell_id in result.missing
        ]  # fmt: skip
        boards.append(
            {
                "env_id": env_id,
                "target_set": target_set,
                "folder": str(folder),
                "agents": [
                    {"label": a.label, "n_runs": a.n_runs, "source": a.source} for a in board.agents
                ],
                "missing_cells": missing,
                "table": table,
                "sentence": sentence,
                "comparisons": comparisons,
            }
        )
        md += [f"## {title}", "", table, "", sentence, "", comparisons, ""]
        page += [
            f"<h2>{html.escape(title)}</h2>",
            markdown_to_html_table(table),
            f"<p>{html.escape(sentence)}</p>",
            markdown_to_html_table(comparisons),
            f'<p><a href="{html.escape(str(folder.relative_to(root)))}/report.html">'
            "full report</a></p>",
        ]
        if missing:
            md += [f"Missing cells: {', '.join(missing)}", ""]
            page.append(f"<p>Missing cells: {html.escape(', '.join(missing))}</p>")
    if result.failed:
        md += ["## Failed cells", ""] + [f"- {k}: {v}" for k, v in result.failed.items()] + [""]
    data = {
        "grid": grid.to_dict(),
        "cells": result.cells,
        "finished": [c for c in result.cells if c not in result.missing],
        "missing": result.missing,
        "failed": result.failed,
        "ran": result.ran,
        "skipped": result.skipped,
        "wall_s": result.wall_s,
        "boards": boards,
    }
    atomic_write_bytes(root / "leaderboard.md", "\n".join(md).encode())
    atomic_write_bytes(root / "leaderboard.html", "\n".join([*page, "</body></html>"]).encode())
    return _write_json(root / "leaderboard.json", data)


def _local_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[-800:]}"


def sweep(
    grid: SweepGrid,
    output_dir: str | Path = "sweep",
    address: str | None = None,
    num_cpus: int | None = None,
    cpus_per_cell: float = 1.0,
    gpus_per_cell: float = 0.0,
    max_retries: int = 2,
    progress: bool = True,
) -> SweepResult:
    """Run every unfinished cell of ``grid`` as a Ray task, then aggregate the
    leaderboard (see the module docstring).

    :param grid: the grid.
    :param output_dir: the sweep folder (on storage every node sees).
    :param address: None: start Ray on this machine; ``"auto"`` or ``"ray://host:port"``:
        join a running cluster. Ignored when Ray is already initialized.
    :param num_cpus: CPUs of the local Ray (None: the cores available to this process).
    :param cpus_per_cell: CPUs each cell declares.
    :param gpus_per_cell: GPUs each cell declares (a fraction allowed).
    :param max_retries: retries of a cell whose worker dies (resumed from its newest
        checkpoint).
    :param progress: print a line per finished cell.
    :raises ImportError: Ray is not installed (naming the install command).
    :raises ValueError: bad resources, or resources the cluster does not have.
    """
    t0 = time.perf_counter()
    if not isinstance(grid, SweepGrid):
        raise ValueError(f"grid must be a SweepGrid, got {type(grid).__name__}")
    if not (isinstance(cpus_per_cell, (int, float)) and cpus_per_cell > 0):
        raise ValueError(f"cpus_per_cell must be > 0, got {cpus_per_cell!r}")
    if not (isinstance(gpus_per_cell, (int, float)) and gpus_per_cell >= 0):
        raise ValueError(f"gpus_per_cell must be >= 0, got {gpus_per_cell!r}")
    check_count("max_retries", max_retries, 0)
    if num_cpus is not None:
        check_count("num_cpus", num_cpus, 1)
    root = Path(output_dir).resolve()
    cells_dir = root / "cells"
    _write_json(root / "grid.json", grid.to_dict())
    cells = grid.cells()
    todo = [c for c in cells if read_done(c, cells_dir) is None]
    skipped = [c.cell_id for c in cells if c not in todo]
    failed: dict[str, str] = {}
    if todo:
        ray = import_ray()  # only when there is work: a finished sweep re-aggregates without Ray
        started = False
        if not ray.is_initialized():
            if address is None:
                ray.init(num_cpus=num_cpus or _local_cpus(), include_dashboard=False)
            else:
                ray.init(address=address)
            started = True
        try:
            _check_resources(ray, cpus_per_cell, gpus_per_cell)
            remote = ray.remote(run_cell).options(
                num_cpus=cpus_per_cell,
                num_gpus=gpus_per_cell,
                max_retries=max_retries,
                retry_exceptions=False,
            )
            pending = {remote.remote(c, str(cells_dir)): c for c in todo}
            n_done = 0
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                cell = pending.pop(ready[0])
                n_done += 1
                try:
                    done = ray.get(ready[0])
                    _write_json(cells_dir / cell.cell_id / DONE, done)  # no shared disk too
                    note = f"done in {done['wall_s']:.1f}s on {done['host']}"
                except Exception as err:  # a cell that raised, or retries ran out
                    failed[cell.cell_id] = _one_line(err)
                    note = f"FAILED ({failed[cell.cell_id][:200]})"
                if progress:
                    print(f"[{n_done}/{len(todo)}] {cell.cell_id}: {note}", flush=True)
        finally:
            if started:
                ray.shutdown()
    missing = [c.cell_id for c in cells if read_done(c, cells_dir) is None]
    boards = aggregate(grid, root)
    result = SweepResult(
        root,
        [c.cell_id for c in cells],
        [c.cell_id for c in todo],
        skipped,
        failed,
        missing,
        boards,
    )
    result.wall_s = time.perf_counter() - t0
    write_leaderboard(grid, root, result)
    return result


def _check_resources(ray: Any, cpus_per_cell: float, gpus_per_cell: float) -> None:
    have = ray.cluster_resources()
    for name, want in (("CPU", cpus_per_cell), ("GPU", gpus_per_cell)):
        if want > have.get(name, 0.0):
            raise ValueError(
                f"{name.lower()}s_per_cell={want} but the Ray cluster has "
                f"{have.get(name, 0.0):g} {name}s in all: no cell could ever be scheduled"
            )


def run_sequential(grid: SweepGrid, output_dir: str | Path) -> dict[tuple[str, str], EvalResult]:
    """The same grid without Ray, the way a user runs it by hand: ``train`` every
    trainable agent's seeds one after another, then one ``evaluate`` per env and target
    set with every agent (seeds pooled as ``runA,runB``). The reference the sweep's
    numbers are checked against, and the baseline of its speed-up.

    :param grid: the grid.
    :param output_dir: folder for the runs (``runs/``) and evaluations (``eval/``).
    :return: ``(env id, target set)`` -> evaluation, rows labelled with the grid's names.
    """
    root = Path(output_dir)
    boards: dict[tuple[str, str], EvalResult] = {}
    for env_id in grid.env_ids:
        agents: list[str] = []
        for spec in grid.agents:
            if not spec.trainable:
                agents.append(spec.agent)
                continue
            runs = []
            for cell in grid.cells_of(env_id, spec):
                args = grid._train_args(env_id, spec, int(cell.seed or 0), str(root / "runs"))
                runs.append(str(train(replace(args, run_name=cell.cell_id)).run_dir))
            agents.append(",".join(runs))
        for target_set in grid.target_sets:
            out = root / "eval" / f"{_slug(env_id)}__{_slug(target_set)}"
            result = evaluate(grid._eval_args(env_id, agents, target_set, str(out)))
            for row, spec in zip(result.agents, grid.agents, strict=False):
                row.label = spec.name
            boards[(env_id, target_set)] = finish_result(result)
    return boards


@dataclass
class SweepArgs:
    """Run a leaderboard grid (env ids × agents × seeds) as Ray tasks, then aggregate."""

    grid: str | None = None
    """YAML/JSON file with the grid's fields (options given here override it)"""
    env_ids: list[str] = field(default_factory=lambda: ["AEGym/SoundMatch-Easy-v1"])
    """environment ids"""
    agents: list[str] = field(default_factory=lambda: ["ae", "static", "random"])
    """baselines by name and trainable algorithms (ppo, sac, a2c, shaped_ppo); an agent
    with hyperparameters as a JSON object: '{"agent": "ppo", "name": "ppo-small",
    "hyperparams": {"n_steps": 64}, "n_envs": 4}'"""
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    """training seeds of the trainable agents"""
    total_timesteps: int = 20_000
    """training budget per trainable cell (env steps)"""
    target_sets: list[str] = field(default_factory=lambda: ["test"])
    """instance sets to evaluate on (test, train, or a WAV path/folder)"""
    n_targets: int | None = 12
    """targets per set, spread evenly (None: all)"""
    eval_seeds: list[int] = field(default_factory=lambda: [0])
    """episode seeds; every target is played once per seed"""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """env keyword arguments as a JSON object (training and evaluation)"""
    checkpoint_every: int = 10_000
    """env steps between checkpoints (what a retried cell resumes from)"""
    n_showcase: int = 0
    """episodes rendered to images/WAVs in each cell's report"""
    native_vec: bool = True
    """use aegym's native batched vector env when available"""
    output_dir: str = "sweep"
    """sweep folder (grid.json, cells/, leaderboard*); rerun to resume"""
    address: str | None = None
    """Ray cluster to join: auto or ray://host:10001 (None: start Ray on this machine)"""
    num_cpus: int | None = None
    """CPUs of the local Ray (None: the cores available)"""
    cpus_per_cell: float = 1.0
    """CPUs each cell declares"""
    gpus_per_cell: float = 0.0
    """GPUs each cell declares (a fraction allowed)"""
    max_retries: int = 2
    """retries of a cell whose worker dies (it resumes from its newest checkpoint)"""


#: Fields of :class:`SweepArgs` that are grid fields (the rest say how to run it).
_GRID_FIELDS = tuple(f.name for f in dataclasses.fields(SweepGrid))


def grid_from_args(args: SweepArgs, given: set[str] | None = None) -> SweepGrid:
    """The grid of a command line: the ``--grid`` file with the options that were
    ``given`` on the command line over it (all of them without a file).

    :param args: parsed arguments.
    :param given: names of the options written on the command line (None: all).
    """
    values = {k: getattr(args, k) for k in _GRID_FIELDS}
    if args.grid is None:
        return SweepGrid.from_dict(values)
    base = load_grid(args.grid).to_dict()
    chosen = set(_GRID_FIELDS) if given is None else given & set(_GRID_FIELDS)
    return SweepGrid.from_dict({**base, **{k: values[k] for k in chosen}})


def parse_sweep_args(argv: Sequence[str]) -> tuple[SweepArgs, set[str]]:
    """Parse ``python -m agents sweep`` words; also return which options were given.

    :param argv: command-line words.
    """
    parser = build_parser(SweepArgs, prog="python -m agents sweep")
    args = SweepArgs(**vars(parser.parse_args(argv)))
    # Parsed again with no defaults: only the options written on the command line remain.
    for action in parser._actions:
        action.default = argparse.SUPPRESS
    given = set(vars(parser.parse_args(argv)))
    return args, given


def main(argv: list[str] | None = None) -> int:
    """``python -m agents sweep ...``: run the grid, print the leaderboard.

    Bad arguments (and a missing Ray) print one ``error: ...`` line and return 2.

    :param argv: command-line words (None: ``sys.argv[1:]``).
    """
    args, given = parse_sweep_args(list(sys.argv[1:] if argv is None else argv))
    try:
        grid = grid_from_args(args, given)
        result = sweep(
            grid,
            args.output_dir,
            address=args.address,
            num_cpus=args.num_cpus,
            cpus_per_cell=args.cpus_per_cell,
            gpus_per_cell=args.gpus_per_cell,
            max_retries=args.max_retries,
        )
    except (ValueError, OSError, ImportError) as err:
        print(f"error: {err}")
        return 2
    for (env_id, target_set), board in result.boards.items():
        title, table, sentence = board_summary(env_id, target_set, board)
        print(f"\n{title}\n{table}\n{sentence}")
    done = len(result.cells) - len(result.missing)
    print(
        f"\n{done}/{len(result.cells)} cells finished ({len(result.ran)} run now, "
        f"{len(result.skipped)} already done) in {result.wall_s:.1f}s -> "
        f"{result.output_dir / 'leaderboard.html'}"
    )
    if result.missing:
        print(f"missing: {', '.join(result.missing)}")
    return 0 if not result.missing else 1


__all__ = [
    "AgentSpec",
    "Cell",
    "SweepArgs",
    "SweepGrid",
    "SweepResult",
    "aggregate",
    "load_grid",
    "run_cell",
    "run_sequential",
    "sweep",
]
