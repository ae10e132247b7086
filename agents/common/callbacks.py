"""SB3 callbacks of the train command: TensorBoard charts of the env's signals, and a
tqdm progress bar that survives chunked ``learn`` calls."""

from __future__ import annotations

from typing import Any

import numpy as np
from stable_baselines3.common.callbacks import BaseCallback
from tqdm.auto import tqdm

from agents.common.envs import success_distance


class EnvSignalsCallback(BaseCallback):
    """Logs the env's signals every step (averaged until SB3 writes its logs).

    Tags: ``reward_terms/<term>`` for every reward term (e.g. ``reward_terms/aud/mel``),
    ``charts/distance`` (every step), ``charts/final_distance``,
    ``charts/success_rate`` (``info["is_success"]``, else the final distance below the
    env's success distance) and ``charts/episode_return`` (at episode ends),
    ``charts/diverged`` (SchedulerGains) and ``gains/alpha``, ``gains/momentum``,
    ``gains/sigma`` (SchedulerGains' optimizer gains).

    :param verbose: SB3 verbosity.
    """

    def __init__(self, verbose: int = 0) -> None:
        super().__init__(verbose)
        self._threshold: float | None = None

    def _success(self, info: dict[str, Any], distance: float) -> bool:
        if "is_success" in info:
            return bool(info["is_success"])
        if self._threshold is None:  # read once from the env's config (SoundMatchLive)
            self._threshold = success_distance(self.training_env)
        return distance < self._threshold

    def _on_step(self) -> bool:
        infos: list[dict[str, Any]] = self.locals.get("infos", [])
        dones = self.locals.get("dones")
        log = self.logger
        has_gains = False
        for i, info in enumerate(infos):
            for name, value in (info.get("reward_terms") or {}).items():
                log.record_mean(f"reward_terms/{name}", float(value))
            if "distance" in info:
                log.record_mean("charts/distance", float(info["distance"]))
            for name, value in (info.get("gains") or {}).items():
                log.record_mean(f"gains/{name}", float(value))
                has_gains = True
            if "diverged" in info:
                log.record_mean("charts/diverged", float(info["diverged"]))
            if dones is not None and bool(dones[i]):
                if "distance" in info:
                    d = float(info["distance"])
                    log.record_mean("charts/final_distance", d)
                    log.record_mean("charts/success_rate", float(self._success(info, d)))
                episode = info.get("episode")
                if episode is not None:
                    log.record_mean("charts/episode_return", float(episode["r"]))
                    log.record_mean("charts/episode_length", float(episode["l"]))
        if not has_gains:
            self._record_core_gains()
        return True

    def _record_core_gains(self) -> None:
        """Native vector envs keep the gains in their batched core (not in infos)."""
        env = self.training_env
        core = getattr(env.unwrapped, "core", None) if env is not None else None
        gains = getattr(core, "gains", None)
        if gains is None or not hasattr(gains, "_fields"):
            return
        for name in gains._fields:
            values = getattr(gains, name).detach().cpu().numpy().reshape(-1)
            for v in values:
                self.logger.record_mean(f"gains/{name}", float(v))


class TqdmCallback(BaseCallback):
    """Advances a shared tqdm bar by the number of env steps taken.

    :param bar: the bar (its ``total`` is the run's total steps).
    """

    def __init__(self, bar: tqdm) -> None:
        super().__init__(0)
        self.bar = bar
        self._last = 0

    def _on_training_start(self) -> None:
        self._last = self.model.num_timesteps

    def _on_step(self) -> bool:
        now = self.model.num_timesteps
        self.bar.update(max(0, now - self._last))
        self._last = now
        rewards = self.locals.get("rewards")
        if rewards is not None and len(self.model.ep_info_buffer) > 0:
            ret = np.mean([e["r"] for e in self.model.ep_info_buffer])
            self.bar.set_postfix(ep_return=f"{ret:.2f}", refresh=False)
        return True
