"""Knob ranges, the knob space and patches.

Every synth knob is a :class:`KnobSpec` (name, unit, physical range, scale, default).
Agents and optimizers work on *normalized* knobs ``u`` in ``[0, 1]``; the mapping to
physical values lives here and nowhere else:

* linear scale: ``x = lo + u * (hi - lo)``
* log scale:    ``x = lo * (hi / lo) ** u``

Normalized values outside ``[0, 1]`` are clamped before mapping (documented behaviour,
so an optimizer step that overshoots lands on the range edge, never on an invalid
value such as a negative cutoff). The clamp is straight-through
(:func:`~aegym.synth._grad.straight_through_clamp`): forward values are exactly those
of ``clamp``, but the gradient passes as the identity, so a knob sitting on 0 or 1
still gets its one-sided gradient and can move back inside.

Sample rate. A ladder cutoff near Nyquist cannot be discretised, so the voice's knob
space caps ``cutoff_hz`` at :func:`cutoff_limit_hz` ``= min(8000, 0.43·fs)``
(:meth:`KnobSpace.for_sample_rate`): 8000 Hz at fs >= 18.6 kHz, 6880 Hz at 16 kHz,
3440 Hz at 8 kHz, 1720 Hz at 4 kHz. Below that cap the filter uses the knob's value
exactly; only the filter envelope can push the cutoff past it, into the filter's
smooth knee (:func:`~aegym.synth.filters.clamp_cutoff`). :class:`KnobSpace` itself
(the table below, :data:`DEFAULT_KNOBS`) keeps the full 40..8000 Hz range: use it for
names and indices, and ``voice.knob_space`` for values.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch

from aegym._checks import check_positive, check_tensor
from aegym.synth._grad import straight_through_clamp
from aegym.synth.filters import CUTOFF_KNEE_FRACTION

Scale = Literal["linear", "log"]


@dataclass(frozen=True)
class KnobSpec:
    """One synth knob: its name, unit, physical range, scale and default.

    :param name: identifier used in patches, observations and logs (units in the name).
    :param unit: physical unit (``"Hz"``, ``"s"``, ``"dB"``, ``"semitones"``, ``"ratio"``).
    :param minimum: lowest physical value.
    :param maximum: highest physical value.
    :param scale: ``"linear"`` or ``"log"`` (log needs ``minimum > 0``).
    :param default: physical default value, inside the range.
    :param description: one line for docs and ``aegym list``.
    """

    name: str
    unit: str
    minimum: float
    maximum: float
    scale: Scale
    default: float
    description: str

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"knob name must be an identifier, got {self.name!r}")
        if not (math.isfinite(self.minimum) and math.isfinite(self.maximum)):
            raise ValueError(f"knob {self.name}: range must be finite")
        if self.minimum >= self.maximum:
            raise ValueError(
                f"knob {self.name}: minimum {self.minimum} must be < maximum {self.maximum}"
            )
        if self.scale not in ("linear", "log"):
            raise ValueError(f"knob {self.name}: scale must be 'linear' or 'log'")
        if self.scale == "log" and self.minimum <= 0:
            raise ValueError(f"knob {self.name}: log scale needs minimum > 0")
        if not self.minimum <= self.default <= self.maximum:
            raise ValueError(f"knob {self.name}: default {self.default} outside range")

    def to_physical(self, unit: torch.Tensor) -> torch.Tensor:
        """Map normalized values (clamped to [0, 1], straight-through) to physical values."""
        u = straight_through_clamp(unit)
        if self.scale == "log":
            return self.minimum * (self.maximum / self.minimum) ** u
        return self.minimum + u * (self.maximum - self.minimum)

    def to_unit(self, physical: torch.Tensor) -> torch.Tensor:
        """Map physical values (clamped to the range) to normalized [0, 1]."""
        x = physical.clamp(self.minimum, self.maximum)
        if self.scale == "log":
            return torch.log(x / self.minimum) / math.log(self.maximum / self.minimum)
        return (x - self.minimum) / (self.maximum - self.minimum)

    def check_physical(self, value: float) -> float:
        """Raise ValueError unless ``value`` is a finite number inside the range."""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"knob {self.name} must be a number, got {value!r}")
        if not math.isfinite(value) or not self.minimum <= value <= self.maximum:
            raise ValueError(
                f"knob {self.name} must be in [{self.minimum}, {self.maximum}] {self.unit}, "
                f"got {value!r}"
            )
        return float(value)


# The default voice's knobs, in the order of the knob vector. A voice caps cutoff_hz's
# maximum at min(8000, 0.43·fs) (KnobSpace.for_sample_rate, cutoff_limit_hz).
DEFAULT_KNOBS: tuple[KnobSpec, ...] = (
    KnobSpec("pitch_midi", "semitones", 36.0, 84.0, "linear", 57.0, "note pitch (MIDI, 69 = A4)"),
    KnobSpec("osc1_shape", "ratio", 0.0, 1.0, "linear", 2 / 3, "osc 1 wave: sine>tri>saw>pulse"),
    KnobSpec("osc2_shape", "ratio", 0.0, 1.0, "linear", 2 / 3, "osc 2 wave: sine>tri>saw>pulse"),
    KnobSpec("osc2_detune_cents", "cents", -100.0, 100.0, "linear", 7.0, "osc 2 detune"),
    KnobSpec("osc_mix", "ratio", 0.0, 1.0, "linear", 0.5, "0 = osc 1 only, 1 = osc 2 only"),
    KnobSpec("pulse_width", "ratio", 0.05, 0.95, "linear", 0.5, "pulse duty cycle"),
    KnobSpec("noise_level", "ratio", 0.0, 1.0, "linear", 0.0, "white noise level"),
    KnobSpec("drive_db", "dB", 0.0, 24.0, "linear", 6.0, "waveshaper drive"),
    KnobSpec("cutoff_hz", "Hz", 40.0, 8000.0, "log", 2000.0, "ladder low-pass (top <= 0.43 fs)"),
    KnobSpec("resonance", "ratio", 0.0, 1.0, "linear", 0.3, "ladder feedback (1 = edge)"),
    KnobSpec("filter_env_octaves", "octaves", -2.0, 6.0, "linear", 2.0, "filter env amount"),
    KnobSpec("filter_attack_s", "s", 0.001, 1.0, "log", 0.01, "filter env attack time"),
    KnobSpec("filter_decay_s", "s", 0.01, 2.0, "log", 0.3, "filter env decay time"),
    KnobSpec("filter_sustain", "ratio", 0.0, 1.0, "linear", 0.3, "filter env sustain level"),
    KnobSpec("filter_release_s", "s", 0.01, 2.0, "log", 0.2, "filter env release time"),
    KnobSpec("amp_attack_s", "s", 0.001, 1.0, "log", 0.005, "amp env attack time"),
    KnobSpec("amp_decay_s", "s", 0.01, 2.0, "log", 0.2, "amp env decay time"),
    KnobSpec("amp_sustain", "ratio", 0.0, 1.0, "linear", 0.7, "amp env sustain level"),
    KnobSpec("amp_release_s", "s", 0.01, 2.0, "log", 0.2, "amp env release time"),
    KnobSpec("gain_db", "dB", -24.0, 0.0, "linear", -6.0, "output gain"),
)


#: The cutoff knob's range is capped by the sample rate (see :func:`cutoff_limit_hz`).
CUTOFF_KNOB = "cutoff_hz"


def cutoff_limit_hz(sample_rate: float, maximum: float = 8000.0) -> float:
    """Highest cutoff knob value at ``sample_rate``: ``min(maximum, 0.43·fs)``, where the
    filter's soft limit (:func:`~aegym.synth.filters.clamp_cutoff`) starts."""
    return min(float(maximum), CUTOFF_KNEE_FRACTION * check_positive("sample_rate", sample_rate))


class KnobSpace(Sequence[KnobSpec]):
    """An ordered set of knobs: the layout of the knob vector ``[..., K]``.

    ``KnobSpace()`` holds :data:`DEFAULT_KNOBS` as listed (cutoff 40..8000 Hz): fine for
    names and indices. A voice maps knobs with :meth:`for_sample_rate`, which caps the
    cutoff below the filter's discretisation limit.
    """

    def __init__(self, knobs: Iterable[KnobSpec] = DEFAULT_KNOBS) -> None:
        self._knobs = tuple(knobs)
        if not self._knobs:
            raise ValueError("a knob space needs at least one knob")
        names = [k.name for k in self._knobs]
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate knob names in {names}")
        self._index = {n: i for i, n in enumerate(names)}

    @classmethod
    def for_sample_rate(
        cls, sample_rate: float, knobs: Iterable[KnobSpec] = DEFAULT_KNOBS
    ) -> KnobSpace:
        """The knob space of a voice at ``sample_rate``: ``knobs`` with ``cutoff_hz``'s
        maximum (and default, if above) lowered to :func:`cutoff_limit_hz`, so no part
        of the knob sits in the filter's saturated top (where it would barely act)."""
        out = []
        for k in knobs:
            cap = cutoff_limit_hz(sample_rate, k.maximum) if k.name == CUTOFF_KNOB else k.maximum
            if cap < k.maximum:
                if cap <= k.minimum:
                    raise ValueError(
                        f"knob {k.name}: sample rate {sample_rate} Hz caps it at {cap:g} "
                        f"{k.unit}, not above its minimum {k.minimum}"
                    )
                k = replace(k, maximum=cap, default=min(k.default, cap))
            out.append(k)
        return cls(out)

    def __len__(self) -> int:
        return len(self._knobs)

    def __getitem__(self, i):  # type: ignore[override]
        return self._knobs[i]

    def __iter__(self) -> Iterator[KnobSpec]:
        return iter(self._knobs)

    def __repr__(self) -> str:
        return f"KnobSpace({', '.join(self.names)})"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(k.name for k in self._knobs)

    def index(self, name: str) -> int:  # type: ignore[override]
        """Position of knob ``name`` in the knob vector."""
        try:
            return self._index[name]
        except KeyError:
            raise ValueError(
                f"unknown knob {name!r}; known knobs: {', '.join(self.names)}"
            ) from None

    def indices(self, names: Iterable[str]) -> list[int]:
        return [self.index(n) for n in names]

    def to_physical(self, unit: torch.Tensor) -> torch.Tensor:
        """``[..., K]`` normalized knobs (clamped to [0, 1], straight-through) -> physical."""
        check_tensor("unit knobs", unit, last_dim=len(self))
        return torch.stack([k.to_physical(unit[..., i]) for i, k in enumerate(self._knobs)], -1)

    def to_unit(self, physical: torch.Tensor) -> torch.Tensor:
        """``[..., K]`` physical values (clamped to each range) -> normalized [0, 1]."""
        check_tensor("physical knobs", physical, last_dim=len(self))
        return torch.stack([k.to_unit(physical[..., i]) for i, k in enumerate(self._knobs)], -1)

    def default_unit(self, batch_size: int | None = None) -> torch.Tensor:
        """Normalized default knobs, ``[K]`` or ``[batch_size, K]``."""
        phys = torch.tensor([k.default for k in self._knobs], dtype=torch.float32)
        unit = self.to_unit(phys)
        return unit if batch_size is None else unit.expand(batch_size, -1).clone()

    def random_unit(
        self, batch_size: int, generator: torch.Generator | None = None
    ) -> torch.Tensor:
        """Uniform random normalized knobs ``[batch_size, K]`` from ``generator``."""
        return torch.rand(batch_size, len(self), generator=generator)


@dataclass(frozen=True)
class Patch(Mapping[str, float]):
    """A named set of physical knob values; round-trips to/from JSON.

    Knobs a patch leaves out take their defaults when converted to a knob vector.
    """

    values: Mapping[str, float]

    def __getitem__(self, key: str) -> float:
        return self.values[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.values)

    def __len__(self) -> int:
        return len(self.values)

    def validate(self, space: KnobSpace) -> Patch:
        """Check names and ranges against ``space``; return self."""
        for name, value in self.values.items():
            space[space.index(name)].check_physical(value)
        return self

    def to_unit(self, space: KnobSpace | None = None) -> torch.Tensor:
        """Normalized knob vector ``[K]`` (defaults for knobs the patch leaves out)."""
        space = space or KnobSpace()
        self.validate(space)
        phys = torch.tensor(
            [float(self.values.get(k.name, k.default)) for k in space], dtype=torch.float32
        )
        return space.to_unit(phys)

    @classmethod
    def from_unit(cls, unit: torch.Tensor, space: KnobSpace | None = None) -> Patch:
        """Patch from a normalized knob vector ``[K]``."""
        space = space or KnobSpace()
        check_tensor("unit knobs", unit, ndim=1, last_dim=len(space))
        phys = space.to_physical(unit.detach().float().cpu())
        return cls({k.name: float(v) for k, v in zip(space, phys.tolist(), strict=True)})

    def to_json(self) -> str:
        return json.dumps(dict(self.values), indent=2, sort_keys=True)

    @classmethod
    def from_json(cls, text: str, space: KnobSpace | None = None) -> Patch:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"patch JSON is not valid JSON: {exc}") from None
        if not isinstance(data, dict):
            raise ValueError(
                f"patch JSON must be an object of knob values, got {type(data).__name__}"
            )
        return cls({str(k): v for k, v in data.items()}).validate(space or KnobSpace())

    def save(self, path: str | Path) -> None:
        Path(path).write_text(self.to_json())

    @classmethod
    def load(cls, path: str | Path, space: KnobSpace | None = None) -> Patch:
        return cls.from_json(Path(path).read_text(), space)
