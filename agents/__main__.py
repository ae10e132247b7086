"""``python -m agents COMMAND ...`` (``aegym-agents`` script): train, evaluate,
leaderboard, sweep, bench, tune-adam, tune-ae, tune-rl, zoo-hyperparams."""

from __future__ import annotations

import sys

USAGE = """usage: python -m agents COMMAND [options]

commands:
  train      train an agent (PPO, SAC, A2C, shaped PPO) on an aegym env
  evaluate   evaluate agents and baselines on the same test episodes, write a report
  leaderboard
             every baseline (and trained runs) per tier, one table each, who wins
  sweep      run a grid (envs x agents x seeds) as Ray tasks, locally or on a cluster,
             and aggregate it into one leaderboard (extra [ray])
  bench      train a small agent and evaluate it against the baselines (one command)
  tune-adam  pick the Adam baseline's constant learning rate on train targets
  tune-ae    tune the AE law's constants on train targets (Optuna; extra [tune])
  tune-rl    tune PPO / shaped PPO hyperparameters on train targets (Optuna; extra [tune])
  zoo-hyperparams
             write RL Baselines3 Zoo hyperparameter files (agents/hyperparams/*.yml)

run `python -m agents COMMAND --help` for a command's options"""

COMMANDS = (
    "train",
    "evaluate",
    "leaderboard",
    "sweep",
    "bench",
    "tune-adam",
    "tune-ae",
    "tune-rl",
    "zoo-hyperparams",
)


def main(argv: list[str] | None = None) -> int:
    """Dispatch to a command's ``main``.

    :param argv: command-line words (None: ``sys.argv[1:]``).
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    command, rest = argv[0], argv[1:]
    if command in COMMANDS:
        from agents.common.cli import keep_freed_memory

        keep_freed_memory()
    if command == "train":
        from agents.train import main as run
    elif command == "evaluate":
        from agents.evaluate import main as run
    elif command == "leaderboard":
        from agents.leaderboard import main as run
    elif command == "sweep":
        from agents.sweep import main as run
    elif command == "bench":
        from agents.main import main as run
    elif command == "tune-adam":
        from agents.tune import main as run
    elif command == "tune-ae":
        from agents.tune import main_ae as run
    elif command == "tune-rl":
        from agents.tune_rl import main as run
    elif command == "zoo-hyperparams":
        from agents.zoo import main as run
    else:
        print(f"error: unknown command {command!r}; allowed: {', '.join(COMMANDS)}")
        return 2
    return run(rest)


if __name__ == "__main__":
    raise SystemExit(main())
