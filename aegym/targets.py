"""Target sounds: versioned, seeded target sets with a train/test split, and WAV targets.

A :class:`TargetSet` is an immutable, ordered collection of :class:`Target` sounds of
equal length and sample rate. Three kinds of target exist:

* ``"in_domain"``: a random patch of the synth rendered by :class:`~aegym.synth.Voice`;
  the true normalized knobs are attached (``unit_knobs``), so a perfect match exists.
* ``"out_of_domain"``: sounds the subtractive voice cannot produce exactly, generated
  in code from seeded parameters (``metadata["generator"]`` names the generator):
  ``"fm"`` (two-operator FM with a decaying index), ``"karplus_strong"`` (plucked
  string), ``"noise_burst"`` (band-passed noise bursts) and ``"bell"`` (additive,
  inharmonic partials). Each is peak-normalized to :data:`OUT_OF_DOMAIN_PEAK_DBFS`.
* ``"wav"``: audio files loaded with :func:`aegym.audio_io.load_audio`.

Targets without true knobs (out-of-domain and WAV) are analysed
(:func:`aegym.analysis.analyze_audio`: pitch, level, attack) so that the knobs an agent
does not move can start near the sound (:func:`estimate_start_knobs`). WAV targets are
analysed when loaded (``metadata["analysis"]``, ``estimated_unit_knobs``); generated
ones on first use (:func:`target_analysis`, cached by audio content), because pYIN on
the 48 train targets costs ~1.3 s plus ~2 s to import librosa, which sets of in-domain
targets should not pay.

Named sets (:data:`TARGET_SETS`) are reproducible: their seed is derived from
``(name, version)``, so ``make_target_set("test")`` gives bit-identical audio on every
call for a given version, and train and test never share a seed. Any change to how a
set is generated (generators, sizes, rejection rule, or the synth voice itself) must
add a new entry to :data:`SET_VERSIONS` and move :data:`CURRENT_VERSION` forward.

================  ==========  ==============  =======================
set               in-domain   out-of-domain   seed
================  ==========  ==============  =======================
``"train"``       128         48 (12 each)    sha256("aegym-targets/v1/train")
``"test"``        64          24 (6 each)     sha256("aegym-targets/v1/test")
================  ==========  ==============  =======================
"""

from __future__ import annotations

import functools
import hashlib
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, get_args

import numpy as np
import torch

from aegym._checks import check_int, check_positive
from aegym.analysis import analyze_audio, estimate_fixed_knobs_batch
from aegym.audio_io import SILENCE_PEAK, load_audio
from aegym.features import rms_dbfs
from aegym.synth import SynthConfig, Voice

__all__ = [
    "CURRENT_VERSION",
    "MIN_IN_DOMAIN_RMS_DBFS",
    "OUT_OF_DOMAIN_GENERATORS",
    "OUT_OF_DOMAIN_PEAK_DBFS",
    "SET_VERSIONS",
    "TARGET_KINDS",
    "TARGET_SETS",
    "Target",
    "TargetKind",
    "TargetSet",
    "TargetSetSpec",
    "derive_seed",
    "estimate_start_knobs",
    "load_wav_targets",
    "make_target_set",
    "resolve_targets",
    "target_analysis",
]

TargetKind = Literal["in_domain", "out_of_domain", "wav"]
TARGET_KINDS: tuple[str, ...] = get_args(TargetKind)

#: Every generator version ever published, with what it means. Add, never edit.
SET_VERSIONS: Mapping[str, str] = MappingProxyType(
    {
        "v0": (
            "train 128 + 48, test 64 + 24 targets; in-domain: uniform unit knobs of the "
            "default Voice, drawn in chunks of 16, kept if finite, RMS >= -45 dBFS and "
            "peak <= 1; out-of-domain: fm, karplus_strong, noise_burst, bell in turn, "
            "peak -3 dBFS"
        ),
        "v1": (
            "v0's sizes and generation rule; the default Voice now maps knobs with a "
            "sample-rate-limited space (cutoff_hz capped at min(8000, 0.43 fs): 6880 Hz "
            "at 16 kHz) and a straight-through clamp, and soft-limits the filter cutoff "
            "(unchanged up to 0.43 fs, a smooth knee towards 0.45 fs instead of a hard "
            "clamp), so in-domain audio and unit knobs differ from v0"
        ),
    }
)
CURRENT_VERSION = "v1"

#: In-domain candidates quieter than this (RMS, dBFS) are redrawn.
MIN_IN_DOMAIN_RMS_DBFS = -45.0
#: Peak level of every out-of-domain target, dBFS.
OUT_OF_DOMAIN_PEAK_DBFS = -3.0
#: Out-of-domain generators, used in turn (target i uses entry i % 4).
OUT_OF_DOMAIN_GENERATORS: tuple[str, ...] = ("fm", "karplus_strong", "noise_burst", "bell")

# Candidate knobs are drawn in fixed-size chunks, so the first n accepted patches do
# not depend on n (a smaller set is a prefix of a larger one, up to float rounding of
# batched rendering at the acceptance threshold). Rendering is batched up to 8 chunks.
_CANDIDATE_CHUNK = 16
_MAX_RENDER_CHUNKS = 8
_MAX_CANDIDATES = 4096


@dataclass(frozen=True)
class TargetSetSpec:
    """Default contents of a named target set.

    :param n_in_domain: number of in-domain (synth) targets.
    :param n_out_of_domain: number of out-of-domain targets (generators in turn).
    :param description: what the set is for.
    """

    n_in_domain: int
    n_out_of_domain: int
    description: str


#: Named sets and their default sizes (the test set keeps >= 50 in-domain, >= 20 others).
TARGET_SETS: Mapping[str, TargetSetSpec] = MappingProxyType(
    {
        "train": TargetSetSpec(128, 48, "targets to train agents on"),
        "test": TargetSetSpec(64, 24, "held-out targets to evaluate on; never train on it"),
    }
)


def derive_seed(*parts: object) -> int:
    """A 63-bit seed from the SHA-256 of ``"/".join(parts)``: stable across runs,
    platforms and Python versions (unlike ``hash``)."""
    digest = hashlib.sha256("/".join(str(p) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@dataclass(frozen=True, eq=False)
class Target:
    """One target sound.

    :param name: identifier, unique within generated sets (e.g. ``"fm_003"``).
    :param audio: mono float32 audio ``[T]`` at ``sample_rate``; treat as read-only.
    :param sample_rate: sample rate in Hz.
    :param kind: ``"in_domain"``, ``"out_of_domain"`` or ``"wav"``.
    :param unit_knobs: the true normalized knobs ``[K]`` of in-domain targets, else None
        (``unit_knobs is not None`` is what makes a target reachable).
    :param metadata: how the target was made (generator parameters, source file...);
        WAV targets carry ``"analysis"``, :meth:`aegym.analysis.AudioAnalysis.to_dict`.
    :param estimated_unit_knobs: starting knobs ``[K]`` estimated from the analysis for
        the default voice at this rate and length (WAV targets; see
        :func:`estimate_start_knobs`), else None.
    """

    name: str
    audio: torch.Tensor = field(repr=False)
    sample_rate: int
    kind: TargetKind
    unit_knobs: torch.Tensor | None = field(default=None, repr=False)
    metadata: Mapping[str, Any] = field(default_factory=dict, repr=False)
    estimated_unit_knobs: torch.Tensor | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in TARGET_KINDS:
            raise ValueError(f"target kind must be one of {TARGET_KINDS}, got {self.kind!r}")
        check_int("sample_rate", self.sample_rate, 1)
        a = self.audio
        if not isinstance(a, torch.Tensor) or a.dtype != torch.float32 or a.ndim != 1:
            raise ValueError(f"target {self.name!r}: audio must be a float32 tensor [T]")
        if a.numel() == 0 or not bool(torch.isfinite(a).all()):
            raise ValueError(f"target {self.name!r}: audio must be non-empty and finite")
        if self.kind == "in_domain" and self.unit_knobs is None:
            raise ValueError(f"in-domain target {self.name!r} needs its unit_knobs")
        if self.unit_knobs is not None and self.unit_knobs.ndim != 1:
            raise ValueError(f"target {self.name!r}: unit_knobs must be [K]")
        if self.estimated_unit_knobs is not None and self.estimated_unit_knobs.ndim != 1:
            raise ValueError(f"target {self.name!r}: estimated_unit_knobs must be [K]")
        object.__setattr__(self, "metadata", MappingProxyType(dict(self.metadata)))

    # A mappingproxy cannot be pickled; sets must pickle for subprocess vector envs.
    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "metadata": dict(self.metadata)}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update({**state, "metadata": MappingProxyType(dict(state["metadata"]))})

    @property
    def num_samples(self) -> int:
        return int(self.audio.shape[0])

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate


@dataclass(frozen=True, eq=False)
class TargetSet(Sequence[Target]):
    """An immutable, ordered set of targets of equal length and sample rate.

    :param name: set name (``"train"``, ``"test"``, ``"random"``, a file or folder name...).
    :param version: generator version (a key of :data:`SET_VERSIONS`), ``"wav"`` for files.
    :param split: ``"train"``, ``"test"``, ``"random"``, ``"custom"`` or ``"wav"``.
    :param targets: the targets, at least one.
    :param seed: the seed the set was generated from (None for WAV sets).
    """

    name: str
    version: str
    split: str
    targets: tuple[Target, ...] = field(repr=False)
    seed: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "targets", tuple(self.targets))
        if not self.targets:
            raise ValueError(f"target set {self.name!r} is empty")
        first = self.targets[0]
        for t in self.targets:
            if (t.sample_rate, t.num_samples) != (first.sample_rate, first.num_samples):
                raise ValueError(
                    f"target set {self.name!r}: target {t.name!r} has {t.num_samples} samples "
                    f"at {t.sample_rate} Hz, target {first.name!r} has {first.num_samples} "
                    f"at {first.sample_rate} Hz; all targets must match"
                )

    def __len__(self) -> int:
        return len(self.targets)

    def __getitem__(self, index: int | str) -> Target:  # type: ignore[override]
        """Target by position, or by name (the first with that name)."""
        if isinstance(index, str):
            for t in self.targets:
                if t.name == index:
                    return t
            raise KeyError(f"no target named {index!r} in set {self.name!r}")
        return self.targets[index]

    def __iter__(self) -> Iterator[Target]:
        return iter(self.targets)

    def __repr__(self) -> str:
        counts = ", ".join(f"{n} {k}" for k, n in self.kind_counts().items())
        return (
            f"TargetSet(name={self.name!r}, version={self.version!r}, split={self.split!r}, "
            f"{len(self)} targets: {counts}, {self.sample_rate} Hz, {self.duration_s:g} s)"
        )

    @property
    def sample_rate(self) -> int:
        return self.targets[0].sample_rate

    @property
    def num_samples(self) -> int:
        return self.targets[0].num_samples

    @property
    def duration_s(self) -> float:
        return self.targets[0].duration_s

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(t.name for t in self.targets)

    def kind_counts(self) -> dict[str, int]:
        """Number of targets of each kind present, in :data:`TARGET_KINDS` order."""
        counts = {k: sum(t.kind == k for t in self.targets) for k in TARGET_KINDS}
        return {k: n for k, n in counts.items() if n}

    def audio_batch(self) -> torch.Tensor:
        """All target audio stacked, ``[N, T]`` float32 (a new tensor)."""
        return torch.stack([t.audio for t in self.targets])

    def knobs_batch(self) -> torch.Tensor:
        """True normalized knobs ``[N, K]``; every target must carry knobs.

        :raises ValueError: some target has none (use ``subset("in_domain")`` first).
        """
        missing = [t.name for t in self.targets if t.unit_knobs is None]
        if missing:
            raise ValueError(
                f"targets without knobs in set {self.name!r}: {missing[:5]}"
                f"{' ...' if len(missing) > 5 else ''}; use subset('in_domain') first"
            )
        return torch.stack([t.unit_knobs for t in self.targets])  # type: ignore[misc]

    def subset(self, kind: TargetKind) -> TargetSet:
        """The targets of one kind, in order, as a set with the same name and version.

        :raises ValueError: unknown kind, or the set has no target of that kind.
        """
        if kind not in TARGET_KINDS:
            raise ValueError(f"kind must be one of {TARGET_KINDS}, got {kind!r}")
        chosen = tuple(t for t in self.targets if t.kind == kind)
        if not chosen:
            raise ValueError(
                f"set {self.name!r} has no {kind!r} targets; kinds present: "
                f"{', '.join(self.kind_counts())}"
            )
        return TargetSet(self.name, self.version, self.split, chosen, self.seed)


# --------------------------------------------------------------------------------------
# Out-of-domain generators: numpy float64, one seeded Generator per target.


def _hz(pitch_midi: float) -> float:
    return 440.0 * 2.0 ** ((pitch_midi - 69.0) / 12.0)


def _fm(rng: np.random.Generator, sr: int, n: int) -> tuple[np.ndarray, dict[str, float]]:
    """Two-operator FM: ``env(t)·sin(2π fc t + I(t)·sin(2π r fc t))``, decaying index."""
    t = np.arange(n) / sr
    carrier_hz = _hz(rng.uniform(40.0, 81.0))
    ratio = float(rng.choice([0.5, 1.0, 1.4142, 2.0, 2.7183, 3.0, 3.5]))
    # Keep the strongest sidebands (about I + 1 of them) below 0.45·fs.
    max_index = max(0.5, (0.45 * sr - carrier_hz) / (ratio * carrier_hz) - 1.0)
    index = min(rng.uniform(1.0, 8.0), max_index)
    index_decay_s = rng.uniform(0.05, 0.6)
    attack_s = rng.uniform(0.002, 0.03)
    decay_s = rng.uniform(0.2, 1.5)
    mod = index * np.exp(-t / index_decay_s) * np.sin(2 * np.pi * ratio * carrier_hz * t)
    env = np.minimum(t / attack_s, 1.0) * np.exp(-t / decay_s)
    params = {
        "carrier_hz": carrier_hz,
        "ratio": ratio,
        "index": index,
        "index_decay_s": index_decay_s,
        "attack_s": attack_s,
        "decay_s": decay_s,
    }
    return env * np.sin(2 * np.pi * carrier_hz * t + mod), params


def _karplus_strong(
    rng: np.random.Generator, sr: int, n: int
) -> tuple[np.ndarray, dict[str, float]]:
    """Plucked string: ``y[i] = g·(y[i-N] + y[i-N-1])/2`` excited by a burst of noise.

    Vectorised one period at a time: a period depends only on the previous one.
    """
    f0_hz = _hz(rng.uniform(40.0, 76.0))
    period = max(2, round(sr / f0_hz))
    loss = rng.uniform(0.985, 0.999)  # gain per period
    brightness = rng.uniform(0.2, 1.0)  # 1 = white excitation, lower = smoothed
    burst = rng.uniform(-1.0, 1.0, period)
    burst = brightness * burst + (1.0 - brightness) * 0.5 * (burst + np.roll(burst, 1))
    y = np.zeros(n + period)
    y[:period] = burst - burst.mean()
    for start in range(period, n, period):
        prev = y[start - period - 1 : start] if start > period else np.r_[0.0, y[:period]]
        stop = min(start + period, n)
        y[start:stop] = (loss * 0.5 * (prev[1:] + prev[:-1]))[: stop - start]
    params = {
        "f0_hz": sr / (period + 0.5),  # the two-point average adds half a sample
        "loss_per_period": loss,
        "brightness": brightness,
    }
    return y[:n], params


def _noise_burst(rng: np.random.Generator, sr: int, n: int) -> tuple[np.ndarray, dict[str, float]]:
    """1-3 bursts of band-passed white noise (Gaussian band in log-frequency)."""
    t = np.arange(n) / sr
    center_hz = math.exp(rng.uniform(math.log(200.0), math.log(0.35 * sr)))
    bandwidth_oct = rng.uniform(0.2, 1.5)
    freqs = np.fft.rfftfreq(n, 1.0 / sr)
    with np.errstate(divide="ignore"):
        octaves = np.log2(np.where(freqs > 0, freqs, 1e-9) / center_hz)
    band = np.exp(-0.5 * (octaves / bandwidth_oct) ** 2)
    noise = np.fft.irfft(np.fft.rfft(rng.standard_normal(n)) * band, n)
    n_bursts = int(rng.integers(1, 4))
    onsets_s = np.r_[0.0, np.sort(rng.uniform(0.1, 0.7, n_bursts - 1)) * n / sr]
    attack_s = rng.uniform(0.001, 0.03)
    decay_s = rng.uniform(0.05, 0.5)
    env = np.zeros(n)
    for onset in onsets_s:
        dt = t - onset
        env += np.where(dt >= 0, np.minimum(dt / attack_s, 1.0) * np.exp(-dt / decay_s), 0.0)
    params = {
        "center_hz": center_hz,
        "bandwidth_octaves": bandwidth_oct,
        "n_bursts": float(n_bursts),
        "attack_s": attack_s,
        "decay_s": decay_s,
    }
    return env * noise, params


# Partial ratios of a minor-third church bell (hum, prime, tierce, quint, nominal, ...).
_BELL_RATIOS = np.array([0.5, 1.0, 1.183, 1.506, 2.0, 2.514, 2.662, 3.011, 4.166, 5.433])


def _bell(rng: np.random.Generator, sr: int, n: int) -> tuple[np.ndarray, dict[str, float]]:
    """Additive bell: jittered inharmonic partials, higher ones decaying faster."""
    t = np.arange(n) / sr
    f0_hz = _hz(rng.uniform(55.0, 84.0))
    ratios = _BELL_RATIOS * (1.0 + rng.normal(0.0, 0.01, _BELL_RATIOS.size))
    amps = rng.uniform(0.2, 1.0, ratios.size) / np.sqrt(np.arange(1, ratios.size + 1))
    phases = rng.uniform(0.0, 2 * np.pi, ratios.size)
    decay_s = rng.uniform(0.5, 2.0)
    keep = ratios * f0_hz < 0.45 * sr
    taus = decay_s * ratios[keep] ** -0.7
    partials = np.sin(2 * np.pi * f0_hz * ratios[keep, None] * t + phases[keep, None])
    y = (amps[keep, None] * np.exp(-t / taus[:, None]) * partials).sum(0)
    y *= np.minimum(t / 0.001, 1.0)  # 1 ms attack avoids a click at the onset
    params = {"f0_hz": f0_hz, "decay_s": decay_s, "n_partials": float(keep.sum())}
    return y, params


_GENERATORS: Mapping[
    str, Callable[[np.random.Generator, int, int], tuple[np.ndarray, dict[str, float]]]
] = MappingProxyType(
    {
        "fm": _fm,
        "karplus_strong": _karplus_strong,
        "noise_burst": _noise_burst,
        "bell": _bell,
    }
)


def _out_of_domain_targets(seed: int, n: int, sample_rate: int, n_samples: int) -> list[Target]:
    peak = 10.0 ** (OUT_OF_DOMAIN_PEAK_DBFS / 20.0)
    targets = []
    for i in range(n):
        gen_name = OUT_OF_DOMAIN_GENERATORS[i % len(OUT_OF_DOMAIN_GENERATORS)]
        target_seed = derive_seed(seed, "out_of_domain", i)
        y, params = _GENERATORS[gen_name](
            np.random.default_rng(target_seed), sample_rate, n_samples
        )
        y = y * (peak / np.abs(y).max())
        targets.append(
            Target(
                name=f"{gen_name}_{i // len(OUT_OF_DOMAIN_GENERATORS):03d}",
                audio=torch.from_numpy(y.astype(np.float32)),
                sample_rate=sample_rate,
                kind="out_of_domain",
                metadata={"generator": gen_name, "seed": target_seed, **params},
            )
        )
    return targets


# --------------------------------------------------------------------------------------
# In-domain targets.


def _in_domain_targets(seed: int, n: int, voice: Voice) -> list[Target]:
    """Render uniform random patches, keeping audible ones (see :data:`SET_VERSIONS`)."""
    space = voice.knob_space
    gen = torch.Generator().manual_seed(derive_seed(seed, "in_domain"))
    targets: list[Target] = []
    drawn = 0
    while len(targets) < n and drawn < _MAX_CANDIDATES:
        # Knobs come in fixed chunks (so the candidate stream does not depend on n);
        # enough chunks for the expected acceptance are rendered in one batch.
        n_chunks = min(_MAX_RENDER_CHUNKS, -(-(n - len(targets)) * 4 // (3 * _CANDIDATE_CHUNK)))
        knobs = torch.cat([space.random_unit(_CANDIDATE_CHUNK, gen) for _ in range(n_chunks)])
        drawn += knobs.shape[0]
        with torch.no_grad():
            audio = voice(knobs)
        ok = torch.isfinite(audio).all(-1)
        audio = torch.where(ok[:, None], audio, 0.0)
        level = rms_dbfs(audio)
        ok &= (level >= MIN_IN_DOMAIN_RMS_DBFS) & (audio.abs().amax(-1) <= 1.0)
        physical = space.to_physical(knobs)
        for j in ok.nonzero().flatten().tolist()[: n - len(targets)]:
            targets.append(
                Target(
                    name=f"in_domain_{len(targets):03d}",
                    audio=audio[j].clone(),
                    sample_rate=voice.config.sample_rate,
                    kind="in_domain",
                    unit_knobs=knobs[j].clone(),
                    metadata={
                        "patch": dict(zip(space.names, physical[j].tolist(), strict=True)),
                        "rms_dbfs": float(level[j]),
                    },
                )
            )
    if len(targets) < n:
        raise RuntimeError(
            f"only {len(targets)} of {n} random patches were audible after "
            f"{drawn} candidates; is the voice silent?"
        )
    return targets


@functools.lru_cache(maxsize=16)
def _build_target_set(
    name: str,
    split: str,
    version: str,
    seed: int,
    sample_rate: int,
    duration_s: float,
    n_in_domain: int,
    n_out_of_domain: int,
) -> TargetSet:
    """Generate a set (pure function of its arguments; cached, copied by callers)."""
    voice = Voice(SynthConfig(sample_rate=sample_rate, duration_s=duration_s))
    targets = _in_domain_targets(seed, n_in_domain, voice)
    targets += _out_of_domain_targets(seed, n_out_of_domain, sample_rate, voice.config.n_samples)
    return TargetSet(name, version, split, tuple(targets), seed)


def _copy_set(ts: TargetSet) -> TargetSet:
    """A copy with fresh tensors, so callers cannot modify the cached set."""
    targets = tuple(
        Target(
            t.name,
            t.audio.clone(),
            t.sample_rate,
            t.kind,
            None if t.unit_knobs is None else t.unit_knobs.clone(),
            t.metadata,
            None if t.estimated_unit_knobs is None else t.estimated_unit_knobs.clone(),
        )
        for t in ts
    )
    return TargetSet(ts.name, ts.version, ts.split, targets, ts.seed)


def make_target_set(
    name: Literal["train", "test"] | str,
    *,
    sample_rate: int = 16_000,
    duration_s: float = 1.0,
    n_in_domain: int | None = None,
    n_out_of_domain: int | None = None,
    version: str = CURRENT_VERSION,
    seed: int | None = None,
) -> TargetSet:
    """Generate a seeded target set: in-domain synth patches, then out-of-domain sounds.

    The set is a pure function of its arguments (bit-identical on every call; generated
    sets are cached in memory and each call returns fresh tensors).

    :param name: ``"train"`` or ``"test"`` (see :data:`TARGET_SETS`), or any other name
        for a custom set (split ``"custom"``, default sizes those of ``"test"``).
    :param sample_rate: sample rate in Hz of the voice and generators.
    :param duration_s: length of each target in seconds.
    :param n_in_domain: in-domain targets; None = the set's default.
    :param n_out_of_domain: out-of-domain targets (generators in turn); None = default.
    :param version: generator version, a key of :data:`SET_VERSIONS`.
    :param seed: None for the canonical set (seed derived from ``(version, name)``);
        an int derives a different, still reproducible set from ``(version, name, seed)``.
    :raises ValueError: unknown version, bad sizes, rate or duration.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"set name must be a non-empty string, got {name!r}")
    if version not in SET_VERSIONS:
        raise ValueError(f"unknown target set version {version!r}; known: {list(SET_VERSIONS)}")
    check_int("sample_rate", sample_rate, 4000)
    duration_s = check_positive("duration_s", duration_s)
    spec = TARGET_SETS.get(name, TARGET_SETS["test"])
    n_in = spec.n_in_domain if n_in_domain is None else check_int("n_in_domain", n_in_domain, 0)
    n_out = (
        spec.n_out_of_domain
        if n_out_of_domain is None
        else check_int("n_out_of_domain", n_out_of_domain, 0)
    )
    if n_in + n_out == 0:
        raise ValueError("a target set needs at least one target (n_in_domain + n_out_of_domain)")
    if seed is None:
        set_seed = derive_seed("aegym-targets", version, name)
    else:
        set_seed = derive_seed("aegym-targets", version, name, check_int("seed", seed, 0))
    split = name if name in TARGET_SETS or name == "random" else "custom"
    return _copy_set(
        _build_target_set(name, split, version, set_seed, sample_rate, duration_s, n_in, n_out)
    )


# --------------------------------------------------------------------------------------
# WAV targets and the env-facing resolver.

PathSpec = str | os.PathLike[str]


#: File name endings a target folder is scanned for (what :func:`aegym.audio_io.read_audio`
#: reads; a single file or a list may have any name libsndfile can read).
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga", ".aif", ".aiff")


def _wav_files(paths: PathSpec | Sequence[PathSpec]) -> tuple[str, list[Path]]:
    """Expand a file, a folder (its audio files, sorted) or a list into (set name, files)."""
    if isinstance(paths, (str, os.PathLike)):
        p = Path(paths)
        if p.is_dir():
            files = sorted(
                f for f in p.iterdir() if f.is_file() and f.suffix.lower() in AUDIO_SUFFIXES
            )
            if not files:
                raise ValueError(
                    f"{p}: directory contains no audio files ({', '.join(AUDIO_SUFFIXES)})"
                )
            return p.name or str(p), files
        if not p.exists():
            raise ValueError(f"{p}: no such audio file or directory")
        return p.stem, [p]
    files = [Path(p) for p in paths]
    if not files:
        raise ValueError("the list of WAV paths is empty")
    for f in files:
        if not f.is_file():
            raise ValueError(f"{f}: no such audio file")
    return "wav", files


def load_wav_targets(
    paths: PathSpec | Sequence[PathSpec],
    sample_rate: int = 16_000,
    duration_s: float = 1.0,
    *,
    peak_dbfs: float | None = None,
) -> TargetSet:
    """Load audio files (WAV, FLAC, OGG, AIFF, ...) as targets of kind ``"wav"``.

    Each file is read with :func:`aegym.audio_io.load_audio` (downmixed to mono,
    resampled to ``sample_rate``), then **cut** to its first ``duration_s`` seconds or
    **zero-padded** at the end to that length.

    :param paths: one audio file, a directory (every file in it ending in one of
        :data:`AUDIO_SUFFIXES`, sorted by name, not recursive) or a list of files.
    :param sample_rate: target sample rate in Hz.
    :param duration_s: target length in seconds.
    :param peak_dbfs: if set, each target is scaled to this peak level; None keeps the
        file's level.
    :raises ValueError: missing, unreadable or silent file (named in the message), an
        empty directory or list.
    """
    check_int("sample_rate", sample_rate, 1)
    duration_s = check_positive("duration_s", duration_s)
    n = round(duration_s * sample_rate)
    set_name, files = _wav_files(paths)
    loaded = []
    for f in files:
        audio = load_audio(f, sample_rate)
        original_s = audio.shape[0] / sample_rate
        audio = torch.nn.functional.pad(audio[:n], (0, max(0, n - audio.shape[0])))
        peak = float(audio.abs().max())
        if peak < SILENCE_PEAK:
            raise ValueError(f"{f}: silent within its first {duration_s:g} s")
        if peak_dbfs is not None:
            audio = audio * (10.0 ** (peak_dbfs / 20.0) / peak)
        loaded.append((f, audio.float().contiguous(), original_s))
    analyses: list[dict[str, Any] | None] = [_analyze(audio, sample_rate) for _, audio, _ in loaded]
    estimates = _estimates(analyses, sample_rate, n)
    targets = []
    for (f, audio, original_s), analysis, estimate in zip(loaded, analyses, estimates, strict=True):
        metadata = {"path": str(f), "original_duration_s": original_s}
        if analysis is not None:
            metadata["analysis"] = analysis
        targets.append(
            Target(
                name=f.name,
                audio=audio,
                sample_rate=sample_rate,
                kind="wav",
                metadata=metadata,
                estimated_unit_knobs=estimate,
            )
        )
    return TargetSet(set_name, "wav", "wav", tuple(targets))


# --------------------------------------------------------------------------------------
# Analysis of targets without true knobs, and starting knobs from it.

# analyze_audio results by (sha256 of the audio, sample rate): generated targets are
# analysed on first use, and every copy of a cached set shares the result.
_ANALYSIS_CACHE: dict[tuple[str, int], dict[str, Any]] = {}
_ANALYSIS_CACHE_SIZE = 4096


def _analyzable(sample_rate: int, n_samples: int) -> bool:
    """Whether :func:`analyze_audio` and a voice can take this rate and length."""
    return sample_rate >= 4000 and n_samples >= max(0.1 * sample_rate, 128)


def _analyze(audio: torch.Tensor, sample_rate: int) -> dict[str, Any] | None:
    if not _analyzable(sample_rate, audio.shape[-1]):
        return None
    key = (hashlib.sha256(audio.numpy().tobytes()).hexdigest(), sample_rate)
    if key not in _ANALYSIS_CACHE:
        if len(_ANALYSIS_CACHE) >= _ANALYSIS_CACHE_SIZE:
            _ANALYSIS_CACHE.pop(next(iter(_ANALYSIS_CACHE)))
        _ANALYSIS_CACHE[key] = analyze_audio(audio, sample_rate).to_dict()
    return dict(_ANALYSIS_CACHE[key])


def _estimates(
    analyses: Sequence[Mapping[str, Any] | None],
    sample_rate: int,
    n_samples: int,
    voice: Voice | None = None,
    base_unit: torch.Tensor | None = None,
) -> list[torch.Tensor | None]:
    """Estimated knobs for each analysis (None where there is none), one batch."""
    rows = [i for i, a in enumerate(analyses) if a is not None]
    out: list[torch.Tensor | None] = [None] * len(analyses)
    if not rows:
        return out
    if voice is None:
        voice = Voice(SynthConfig(sample_rate=sample_rate, duration_s=n_samples / sample_rate))
    knobs, _ = estimate_fixed_knobs_batch([analyses[i] for i in rows], voice, base_unit)  # type: ignore[misc]
    for r, i in enumerate(rows):
        out[i] = knobs[r].clone()
    return out


def target_analysis(target: Target) -> dict[str, Any] | None:
    """The analysis (:meth:`aegym.analysis.AudioAnalysis.to_dict`) of a target without
    true knobs: ``metadata["analysis"]`` when present, else computed and cached by audio
    content. None for targets with true knobs and for audio too short (< 0.1 s) or at a
    rate too low (< 4 kHz) to analyse."""
    if target.unit_knobs is not None:
        return None
    stored = target.metadata.get("analysis")
    if stored is not None:
        return dict(stored)
    return _analyze(target.audio, target.sample_rate)


def estimate_start_knobs(
    targets: Sequence[Target], voice: Voice, base_unit: torch.Tensor | None = None
) -> torch.Tensor:
    """Starting knobs ``[N, K]`` (CPU) of targets without true knobs, from their analysis
    (:func:`aegym.analysis.estimate_fixed_knobs`); ``base_unit`` (None = defaults) where
    there is none. A target's ``estimated_unit_knobs`` is reused when it was made for
    this voice (the default voice at the target's rate and length, defaults as base).

    :param voice: renders at the targets' sample rate and length (the level estimate
        depends on it).
    :raises ValueError: a target with true knobs, or a voice of another rate or length.
    """
    space = voice.knob_space
    base = space.default_unit() if base_unit is None else base_unit.detach().float().cpu()
    out = base.expand(len(targets), -1).clone()
    cfg = voice.config
    reusable = base_unit is None and cfg == SynthConfig(cfg.sample_rate, cfg.duration_s)
    todo: list[int] = []
    for i, t in enumerate(targets):
        if t.unit_knobs is not None:
            raise ValueError(f"target {t.name!r} has true knobs; nothing to estimate")
        if (t.sample_rate, t.num_samples) != (cfg.sample_rate, cfg.n_samples):
            raise ValueError(
                f"target {t.name!r} has {t.num_samples} samples at {t.sample_rate} Hz, the "
                f"voice renders {cfg.n_samples} at {cfg.sample_rate} Hz"
            )
        if reusable and t.estimated_unit_knobs is not None:
            out[i] = t.estimated_unit_knobs
        else:
            todo.append(i)
    if todo:
        analyses = [target_analysis(targets[i]) for i in todo]
        estimates = _estimates(analyses, cfg.sample_rate, cfg.n_samples, voice, base)
        for i, est in zip(todo, estimates, strict=True):
            if est is not None:
                out[i] = est
    return out


TargetSpec = None | str | os.PathLike[str] | Sequence[str | os.PathLike[str]] | TargetSet


def resolve_targets(
    spec: TargetSpec,
    *,
    sample_rate: int = 16_000,
    duration_s: float = 1.0,
    seed: int | None = None,
    n_random: int = 64,
    kinds: Sequence[str] | None = None,
) -> TargetSet:
    """Turn an env's ``target`` argument into a :class:`TargetSet`.

    =======================  ======================================================
    ``spec``                 result
    =======================  ======================================================
    ``None`` / ``"random"``  ``n_random`` random in-domain patches from ``seed``
                             (None = a fixed default seed)
    ``"train"``/``"test"``   the canonical named set (``seed`` is ignored)
    a ``TargetSet``          itself, if its rate and length match
    a path (str or Path)     :func:`load_wav_targets` of a WAV file or a directory
    a list of paths          :func:`load_wav_targets` of those files
    =======================  ======================================================

    Set names take precedence over same-named relative paths; pass a ``Path`` to force
    a path.

    ``kinds`` (e.g. ``("in_domain",)``) reduces a *named* set to the targets of those
    kinds, in order (an env tier that evaluates on reachable targets only); other specs
    are returned whole, for the caller to check.

    :raises ValueError: anything else, listing what is allowed.
    """
    if spec is None or (isinstance(spec, str) and spec == "random"):
        return make_target_set(
            "random",
            sample_rate=sample_rate,
            duration_s=duration_s,
            n_in_domain=check_int("n_random", n_random, 1),
            n_out_of_domain=0,
            seed=seed,
        )
    if isinstance(spec, TargetSet):
        n = round(duration_s * sample_rate)
        if (spec.sample_rate, spec.num_samples) != (sample_rate, n):
            raise ValueError(
                f"target set {spec.name!r} has {spec.num_samples} samples at "
                f"{spec.sample_rate} Hz; expected {n} at {sample_rate} Hz"
            )
        return spec
    if isinstance(spec, str) and spec in TARGET_SETS:
        named = make_target_set(spec, sample_rate=sample_rate, duration_s=duration_s)
        if kinds is None:
            return named
        chosen = tuple(t for t in named if t.kind in tuple(kinds))
        if not chosen:
            raise ValueError(f"set {spec!r} has no targets of kind {list(kinds)}")
        return TargetSet(named.name, named.version, named.split, chosen, named.seed)
    if isinstance(spec, os.PathLike) or (isinstance(spec, str) and Path(spec).exists()):
        return load_wav_targets(spec, sample_rate, duration_s)
    if isinstance(spec, Sequence) and not isinstance(spec, (str, bytes)):
        if all(isinstance(p, (str, os.PathLike)) for p in spec):
            return load_wav_targets(list(spec), sample_rate, duration_s)
    raise ValueError(
        f"unknown target {spec!r}; expected None or 'random' (random synth patches), "
        f"a set name ({', '.join(repr(s) for s in TARGET_SETS)}), an existing WAV file or "
        "directory of WAV files, a list of WAV paths, or a TargetSet"
    )
