"""``python -m agents tune-rl``: tune an RL algorithm's hyperparameters on *train* targets.

RL Zoo's recipe with Optuna (a TPE sampler, a median pruner), on aegym's own train and
evaluate code: every trial trains ``--timesteps`` steps on the env's train targets
(``agents.train.train`` with the trial's hyperparameters as overrides) and is scored by
the mean final distance of the deterministic policy on ``--n-targets`` train targets
spread evenly × ``--seeds`` (``agents.evaluate.evaluate`` on ``target_set="train"``; the
test set is never seen). A trial is pruned when its mid-training score (at half the
budget) is worse than the median of earlier trials at that point.

The study is stored in ``OUT/study.log`` (Optuna's journal file), so an interrupted
tuning resumes where it stopped with the same command; every trial's run folder is kept
under ``OUT/trials``. The result (``OUT/tuning.json``: best hyperparameters, every trial)
is what :data:`agents.hyperparams.PPO_TUNED_EASY` records — copy the printed ``hyperparams``
there to make them the defaults. Optuna is an optional dependency (``pip install -e
".[tune]"``).

    python -m agents tune-rl --env-id AEGym/SoundMatch-Easy-v1 --algo ppo --trials 16 \\
        --timesteps 10000 --out bench/tune_ppo
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aegym.audio_io import atomic_write_bytes
from agents.common.checks import check_count
from agents.common.cli import parse_args
from agents.common.envs import check_env_id
from agents.evaluate import EvalArgs, evaluate
from agents.train import TrainArgs, train
from agents.tune import import_optuna

if TYPE_CHECKING:
    import optuna

#: Algorithms with a search space here.
TUNABLE_ALGOS = ("ppo", "shaped_ppo")


@dataclass(frozen=True)
class TuneRLArgs:
    """Tune an RL algorithm's hyperparameters on an env's train targets (Optuna TPE)."""

    env_id: str = "AEGym/SoundMatch-Easy-v1"
    """environment id"""
    algo: str = "ppo"
    """algorithm to tune: ppo or shaped_ppo"""
    trials: int = 16
    """trials in the study (a resumed study runs only the missing ones)"""
    timesteps: int = 10_000
    """training steps per trial"""
    n_targets: int = 16
    """train targets a trial is scored on, spread evenly over the train set"""
    seeds: list[int] = field(default_factory=lambda: [0])
    """episode seeds of the scoring episodes"""
    env_kwargs: dict[str, Any] = field(default_factory=dict)
    """env keyword arguments as a JSON object (training and scoring)"""
    train_seed: int = 0
    """training seed of every trial (the same for all, so trials differ by settings)"""
    sampler_seed: int = 0
    """seed of the TPE sampler"""
    out: str = "bench/tune_rl"
    """study folder: study.log (resumable journal), trials/, tuning.json"""
    torch_threads: int = 1
    """torch intra-op threads"""


def check_tune_args(args: TuneRLArgs) -> None:
    """Raise ValueError naming the first bad argument."""
    check_env_id(args.env_id)
    if args.algo not in TUNABLE_ALGOS:
        raise ValueError(f"algo must be one of {', '.join(TUNABLE_ALGOS)}, got {args.algo!r}")
    for name in ("trials", "timesteps", "n_targets", "torch_threads"):
        check_count(name, getattr(args, name))
    if not args.seeds:
        raise ValueError("seeds must name at least one episode seed")


def sample_ppo(trial: optuna.Trial, n_envs: int) -> dict[str, Any]:
    """PPO hyperparameters of one trial (RL Zoo's ranges, narrowed to small budgets).

    ``batch_size`` is drawn among the divisors of the rollout size ``n_steps·n_envs``.
    """
    n_steps = trial.suggest_categorical("n_steps", [32, 64, 128])
    batch_size = trial.suggest_categorical("batch_size", [64, 128, 256])
    batch_size = min(batch_size, n_steps * n_envs)
    arch = trial.suggest_categorical("net_arch", ["small", "medium"])
    return {
        "n_steps": n_steps,
        "batch_size": batch_size,
        "learning_rate": trial.suggest_float("learning_rate", 1e-4, 3e-3, log=True),
        "gamma": trial.suggest_categorical("gamma", [0.9, 0.95, 0.98]),
        "gae_lambda": trial.suggest_categorical("gae_lambda", [0.9, 0.95, 0.98]),
        "clip_range": trial.suggest_categorical("clip_range", [0.1, 0.2, 0.3]),
        "n_epochs": trial.suggest_categorical("n_epochs", [5, 10, 20]),
        "ent_coef": trial.suggest_float("ent_coef", 1e-8, 1e-2, log=True),
        "policy_kwargs": {
            "net_arch": [64, 64] if arch == "small" else [128, 128],
            "log_std_init": trial.suggest_float("log_std_init", -2.0, 0.0),
        },
    }


def score_run(args: TuneRLArgs, model_path: Path) -> float:
    """Mean final distance of a trained model on the scoring train episodes."""
    result = evaluate(
        EvalArgs(
            env_id=args.env_id,
            agents=[f"{args.algo}:{model_path}"],
            target_set="train",
            n_targets=args.n_targets,
            seeds=list(args.seeds),
            env_kwargs=dict(args.env_kwargs),
            torch_threads=args.torch_threads,
        ),
        write=False,
    )
    return float(result.agents[0].metrics["final_distance"].mean)


def tune_rl(args: TuneRLArgs) -> dict[str, Any]:
    """Run (or resume) the study; return and write ``tuning.json``.

    :raises ValueError: bad arguments.
    :raises ImportError: Optuna is missing.
    """
    check_tune_args(args)
    optuna = import_optuna("tune-rl")
    from agents.hyperparams import get_settings

    out = Path(args.out)
    (out / "trials").mkdir(parents=True, exist_ok=True)
    n_envs = get_settings(args.env_id, args.algo).n_envs
    storage = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(out / "study.log"))
    )
    study = optuna.create_study(
        study_name=f"{args.env_id}:{args.algo}",
        storage=storage,
        load_if_exists=True,
        direction="minimize",
        sampler=optuna.samplers.TPESampler(seed=args.sampler_seed),
        pruner=optuna.pruners.MedianPruner(n_startup_trials=4),
    )
    half = max(1, args.timesteps // 2)

    def objective(trial: optuna.Trial) -> float:
        hyperparams = sample_ppo(trial, n_envs)
        run_dir = out / "trials" / f"trial_{trial.number:03d}"
        common = {"progress": False, "torch_threads": args.torch_threads}
        first = train(
            TrainArgs(
                env_id=args.env_id,
                algo=args.algo,
                total_timesteps=half,
                seed=args.train_seed,
                output_dir=str(run_dir.parent),
                run_name=run_dir.name,
                hyperparams=hyperparams,
                env_kwargs=dict(args.env_kwargs),
                checkpoint_every=half,
                **common,
            )
        )
        trial.report(score_run(args, first.model_path), step=first.num_timesteps)
        if trial.should_prune():
            raise optuna.TrialPruned()
        final = train(TrainArgs(resume=str(run_dir), total_timesteps=args.timesteps, **common))
        return score_run(args, final.model_path)

    done = sum(
        t.state in (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.PRUNED)
        for t in study.trials
    )
    t0 = time.perf_counter()
    if done < args.trials:
        study.optimize(objective, n_trials=args.trials - done)
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not complete:
        raise RuntimeError(f"no trial of the study in {str(out)!r} completed")
    best = study.best_trial
    result = {
        "args": asdict(args),
        "objective": "mean final distance on train targets (lower is better)",
        "best": {
            "trial": best.number,
            "value": best.value,
            "params": best.params,
            "hyperparams": sample_ppo(optuna.trial.FixedTrial(best.params), n_envs),
        },
        "trials": [
            {"number": t.number, "state": t.state.name, "value": t.value, "params": t.params}
            for t in study.trials
        ],
        "wall_s": round(time.perf_counter() - t0, 1),
    }
    atomic_write_bytes(out / "tuning.json", json.dumps(result, indent=1).encode())
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the study and print the best hyperparameters as JSON.

    :param argv: command-line words (None: ``sys.argv``).
    """
    args = parse_args(TuneRLArgs, argv, prog="python -m agents tune-rl")
    try:
        result = tune_rl(args)
    except (ValueError, ImportError, RuntimeError) as err:
        print(f"error: {err}")
        return 2
    print(json.dumps(result["best"], indent=1))
    return 0
