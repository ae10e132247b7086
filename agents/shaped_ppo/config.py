"""Switches of shaped PPO (:class:`ShapingConfig`) and the names of its reward channels."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import MappingProxyType
from typing import Any

import numpy as np

from aegym.reward import RewardConfig

#: Every reward term of aegym's composite reward, in order (an env uses a subset: its
#: core's ``reward_fn.terms``, which is what ``term_names=None`` resolves to).
AEGYM_TERMS: tuple[str, ...] = tuple(RewardConfig().term_coefficients)
#: Names of the KL reference policy (``kl_reference``): a baseline of
#: :func:`agents.baselines.make_baseline`, or ``"none"`` (no reference: KL penalty off).
KL_REFERENCES: tuple[str, ...] = ("ae", "adam", "none")
#: Channel holding ``reward − Σ terms`` (e.g. the divergence penalty).
RESIDUAL = "other"
#: Channel holding the potential-based shaping reward.
POTENTIAL = "shaping/potential"
#: The single channel when per-term advantages are off.
TOTAL = "total"


@dataclass(frozen=True)
class ShapingConfig:
    """Switches of :class:`ShapedPPO` (see the module docstring for the maths).

    :param per_term: GAE per reward channel with one value head each; False: one
        channel, the total reward (plus the shaping reward if any).
    :param term_names: reward terms read from ``info["reward_terms"]``; the residual
        channel ``"other"`` is always added. None (the default): the training env's own
        terms (its core's ``reward_fn.terms``), resolved by :class:`ShapedPPO` when it
        sets up (:meth:`resolve`), so terms the env never reports are no channels.
    :param term_weights: ``w_k`` by channel name or by group prefix (``"aud"``, ``"opt"``,
        ``"pol"``, ``"pen"``, ``"other"``, ``"shaping"``); exact names win over prefixes.
        A weight of 0 removes the channel from the policy's advantage.
    :param default_weight: ``w_k`` of channels not named in ``term_weights``.
    :param normalize_terms: divide each ``A_k`` by a running std ``s_k`` (floored). This
        *changes the objective*: the policy then follows ``Σ_k (w_k/s_k)·A_k``, i.e. each
        term reweighted by the inverse of its running advantage scale, so it no longer
        maximizes the env's return (a small but real term counts as much as a large
        one). False is the return-preserving setting: with every weight 1 the combined
        advantage is PPO's GAE on the total reward with ``V = Σ_k V_k`` (up to float
        rounding; channels that never paid are left out, see :func:`active_channels`).
    :param norm_floor: smallest ``s_k`` (reward units), so tiny terms are not blown up.
    :param potential_coef: ``c`` in ``Φ(s) = −c·distance(s)``; 0 turns shaping off.
    :param kl_coef: weight of the KL penalty to the reference policy; 0 turns it off.
    :param kl_ref_std: σ_ref, the reference Gaussian's fixed std (action units).
    :param kl_full: use the policy's own std in the KL (also pulls σ to σ_ref).
    :param kl_reference: which policy the KL pulls toward when training from the CLI
        (:data:`KL_REFERENCES`): ``"ae"`` (the AE baseline), ``"adam"`` (the Adam
        baseline, where :func:`agents.baselines.make_baseline` has one for the env) or
        ``"none"`` (no reference; the KL penalty is off whatever ``kl_coef``).
        :class:`ShapedPPO` itself takes the policy as ``reference=``.
    """

    per_term: bool = True
    term_names: tuple[str, ...] | None = None
    term_weights: Mapping[str, float] = field(default_factory=dict)
    default_weight: float = 1.0
    normalize_terms: bool = True
    norm_floor: float = 0.01
    potential_coef: float = 0.0
    kl_coef: float = 0.0
    kl_ref_std: float = 0.3
    kl_full: bool = False
    kl_reference: str = "ae"

    def __post_init__(self) -> None:
        if self.term_names is not None:
            if isinstance(self.term_names, str):
                raise ValueError(f"term_names must be a sequence of names, got {self.term_names!r}")
            object.__setattr__(self, "term_names", tuple(self.term_names))
        object.__setattr__(self, "term_weights", MappingProxyType(dict(self.term_weights)))
        names = self.term_names or ()
        if len(set(names)) != len(names):
            raise ValueError(f"term_names has duplicates: {names}")
        for name in (RESIDUAL, POTENTIAL, TOTAL):
            if name in names:
                raise ValueError(f"term_names must not contain the reserved channel {name!r}")
        if self.kl_reference not in KL_REFERENCES:
            raise ValueError(
                f"kl_reference must be one of {list(KL_REFERENCES)}, got {self.kl_reference!r}"
            )
        for name, value in (
            ("default_weight", self.default_weight),
            ("potential_coef", self.potential_coef),
            ("kl_coef", self.kl_coef),
        ):
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
        for name, value in self.term_weights.items():
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"term_weights[{name!r}] must be finite and >= 0, got {value!r}")
        if not self.norm_floor > 0:
            raise ValueError(f"norm_floor must be > 0, got {self.norm_floor!r}")
        if not self.kl_ref_std > 0:
            raise ValueError(f"kl_ref_std must be > 0, got {self.kl_ref_std!r}")

    @classmethod
    def off(cls) -> ShapingConfig:
        """Every switch off: ShapedPPO then computes exactly PPO's advantages and loss."""
        return cls(
            per_term=False,
            normalize_terms=False,
            potential_coef=0.0,
            kl_coef=0.0,
            kl_reference="none",
        )

    @property
    def kl_active(self) -> bool:
        """Whether the KL penalty is on (``kl_coef > 0`` and a reference is named)."""
        return self.kl_coef > 0 and self.kl_reference != "none"

    def resolve(self, env_terms: Sequence[str]) -> ShapingConfig:
        """This config with ``term_names=None`` replaced by ``env_terms`` (explicit
        names are kept).

        :param env_terms: the reward terms the env reports.
        """
        if self.term_names is not None:
            return self
        return replace(self, term_names=tuple(env_terms))

    @property
    def channels(self) -> tuple[str, ...]:
        """Reward channels, one value head each.

        :raises ValueError: ``per_term`` with ``term_names`` not resolved yet.
        """
        if not self.per_term:
            return (TOTAL,)
        if self.term_names is None:
            raise ValueError(
                "term_names=None is resolved from the env when ShapedPPO sets up; "
                "call resolve(env_terms) first"
            )
        extra = (POTENTIAL,) if self.potential_coef > 0 else ()
        return (*self.term_names, RESIDUAL, *extra)

    def weight(self, channel: str) -> float:
        """``w_k`` of a channel: exact name, else group prefix, else the default.

        :param channel: a channel name.
        """
        if not self.per_term:
            return 1.0
        if channel in self.term_weights:
            return float(self.term_weights[channel])
        group = channel.split("/")[0]
        return float(self.term_weights.get(group, self.default_weight))

    @property
    def weights(self) -> np.ndarray:
        """``w_k`` of every channel, ``[K]`` float32."""
        return np.array([self.weight(c) for c in self.channels], dtype=np.float32)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict of the settings."""
        return {
            "per_term": self.per_term,
            "term_names": None if self.term_names is None else list(self.term_names),
            "term_weights": dict(self.term_weights),
            "default_weight": self.default_weight,
            "normalize_terms": self.normalize_terms,
            "norm_floor": self.norm_floor,
            "potential_coef": self.potential_coef,
            "kl_coef": self.kl_coef,
            "kl_ref_std": self.kl_ref_std,
            "kl_full": self.kl_full,
            "kl_reference": self.kl_reference,
        }
