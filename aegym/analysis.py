"""Analysis of a target recording: pitch, level and attack, for starting the fixed knobs.

A WAV target has no true knobs; the knobs an agent does not move must still start
somewhere sensible, or a 4-knob agent cannot get near a recording played at another
pitch. :func:`analyze_audio` measures what the synth's fixed knobs need:

* **pitch** — the fundamental by probabilistic YIN (``librosa.pyin``, Mauch & Dixon
  2014): the median f0 over voiced frames, searched from 32.7 Hz (C1) to 2093 Hz (C7),
  with the share of voiced frames as its confidence. A frame counts as voiced when
  pYIN's voicing probability is at least :data:`VOICED_PROBABILITY` (its HMM flags
  call white noise 94 % voiced at C1; the probability stays near 0.01 there, near 1
  on tones, and above 0.4 even on a 40 Hz tone). Unpitched sounds (noise bursts,
  tones buried at 0 dB SNR) have few voiced frames and report ``f0_hz = nan``.
* **level** — RMS and peak in dBFS over the whole signal, and the loudest 50 ms RMS
  (what a listener hears as the note's level).
* **attack** — time from the first frame above -40 dB of the peak envelope to the
  first frame within 1 dB of the peak (50 ms RMS frames, 5 ms hop).

pYIN is chosen over hand-written autocorrelation and over torchaudio's
``detect_pitch_frequency`` because the latter makes octave errors on plain harmonic
tones (measured here: 440 Hz read as 147 Hz, 2 kHz as 1 kHz), while pYIN stays within
0.15 semitone from 40 Hz to 2 kHz. Its pitch grid is :data:`PITCH_RESOLUTION` (a
quarter semitone, not librosa's tenth): the HMM decoding costs the square of the grid
size, and a quarter-semitone grid analyses a 0.5 s clip in ~28 ms instead of ~180 ms
(2 cores), so the 48 generated targets of the train set take ~1.3 s, not ~9 s.

:func:`estimate_fixed_knobs` turns an analysis into starting knobs of the voice
(pitch, amp attack, output gain), for the knobs an agent does not move.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from aegym._checks import check_int

if TYPE_CHECKING:
    from aegym.synth import Voice

__all__ = [
    "ESTIMATED_KNOBS",
    "F0_MAX_HZ",
    "F0_MIN_HZ",
    "AudioAnalysis",
    "analyze_audio",
    "estimate_fixed_knobs",
    "estimate_fixed_knobs_batch",
    "loudest_rms_dbfs",
]

#: Pitch search range of :func:`analyze_audio` (C1 to C7).
F0_MIN_HZ = 32.70
F0_MAX_HZ = 2093.0
#: pYIN voicing probability from which a frame counts as voiced.
VOICED_PROBABILITY = 0.1
#: Below this share of voiced frames a sound counts as unpitched (``f0_hz = nan``).
MIN_VOICED_FRACTION = 0.2
#: pYIN pitch grid in semitones (see the module docstring for why not 0.1).
PITCH_RESOLUTION = 0.25
_FLOOR_DB = -120.0


@dataclass(frozen=True)
class AudioAnalysis:
    """What :func:`analyze_audio` measured (``nan`` where undefined).

    :param f0_hz: median fundamental over voiced frames; nan if unpitched.
    :param pitch_midi: ``69 + 12·log2(f0 / 440)``; nan if unpitched.
    :param voiced_fraction: share of pYIN frames judged voiced, in [0, 1].
    :param rms_dbfs: RMS level of the whole signal.
    :param peak_dbfs: sample peak.
    :param loudest_rms_dbfs: RMS of the loudest 50 ms frame.
    :param attack_s: rise time from -40 dB to within 1 dB of the envelope's peak.
    """

    f0_hz: float
    pitch_midi: float
    voiced_fraction: float
    rms_dbfs: float
    peak_dbfs: float
    loudest_rms_dbfs: float
    attack_s: float

    @property
    def pitched(self) -> bool:
        return math.isfinite(self.f0_hz)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (nan stays nan: ``json.dumps`` writes it as ``NaN``)."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AudioAnalysis:
        """Inverse of :meth:`to_dict` (extra keys are ignored)."""
        return cls(**{f.name: float(data[f.name]) for f in fields(cls)})


def _db(x: np.ndarray | float) -> np.ndarray:
    return 20.0 * np.log10(np.maximum(np.asarray(x, dtype=np.float64), 10 ** (_FLOOR_DB / 20)))


def _envelope_db(y: np.ndarray, sample_rate: int) -> tuple[np.ndarray, float]:
    """50 ms RMS frames every 5 ms, in dB; returns (frames, hop in seconds)."""
    frame = max(1, round(0.05 * sample_rate))
    hop = max(1, round(0.005 * sample_rate))
    padded = np.pad(y, (frame // 2, frame // 2))
    n = 1 + max(0, (padded.shape[0] - frame) // hop)
    idx = np.arange(frame)[None, :] + hop * np.arange(n)[:, None]
    rms = np.sqrt(np.mean(padded[idx] ** 2, axis=1))
    return _db(rms), hop / sample_rate


def _attack_s(env_db: np.ndarray, hop_s: float) -> float:
    """Rise time of an envelope: from -40 dB of its peak to within 1 dB of it."""
    peak = float(env_db.max())
    start = int(np.argmax(env_db > peak - 40.0))
    top = int(np.argmax(env_db >= peak - 1.0))
    return max(0.0, (top - start) * hop_s)


def loudest_rms_dbfs(audio: torch.Tensor | np.ndarray, sample_rate: int) -> np.ndarray:
    """RMS of the loudest 50 ms frame (as :attr:`AudioAnalysis.loudest_rms_dbfs`),
    ``[..., T] -> [...]`` in dBFS."""
    y = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    y = y.astype(np.float64)
    flat = y.reshape(-1, y.shape[-1])
    out = np.array([_envelope_db(row, sample_rate)[0].max() for row in flat])
    return out.reshape(y.shape[:-1])


def analyze_audio(audio: torch.Tensor | np.ndarray, sample_rate: int) -> AudioAnalysis:
    """Measure pitch, level and attack of a mono signal ``[T]``.

    :param audio: float samples in [-1, 1], at least 0.1 s long.
    :param sample_rate: in Hz, >= 4000 (pitch up to C7 needs it).
    :raises ValueError: wrong shape, too short, non-finite samples or a bad rate.
    """
    import librosa  # the import costs ~1 s; only WAV targets need it

    check_int("sample_rate", sample_rate, 4000)
    y = audio.detach().cpu().numpy() if isinstance(audio, torch.Tensor) else np.asarray(audio)
    y = y.astype(np.float64)
    if y.ndim != 1:
        raise ValueError(f"audio must be mono [T], got shape {tuple(y.shape)}")
    if y.shape[0] < 0.1 * sample_rate:
        raise ValueError(
            f"audio must be at least 0.1 s long to analyze, got {y.shape[0]} samples "
            f"at {sample_rate} Hz"
        )
    if not np.isfinite(y).all():
        raise ValueError("audio contains NaN or inf samples")

    env_db, hop_s = _envelope_db(y, sample_rate)
    peak_env = float(env_db.max())
    attack_s = _attack_s(env_db, hop_s)

    # Frames must hold two periods of the lowest pitch searched.
    frame = 1 << math.ceil(math.log2(2.2 * sample_rate / F0_MIN_HZ))
    f0, _, prob = librosa.pyin(
        y,
        fmin=F0_MIN_HZ,
        fmax=F0_MAX_HZ,
        sr=sample_rate,
        frame_length=frame,
        center=True,
        resolution=PITCH_RESOLUTION,
    )
    voiced = (prob >= VOICED_PROBABILITY) & np.isfinite(f0)
    voiced_fraction = float(np.mean(voiced)) if voiced.size else 0.0
    f0_hz = math.nan
    if voiced_fraction >= MIN_VOICED_FRACTION:
        f0_hz = float(np.median(f0[voiced]))
    pitch_midi = 69.0 + 12.0 * math.log2(f0_hz / 440.0) if math.isfinite(f0_hz) else math.nan
    return AudioAnalysis(
        f0_hz=f0_hz,
        pitch_midi=pitch_midi,
        voiced_fraction=voiced_fraction,
        rms_dbfs=float(_db(np.sqrt(np.mean(y**2)))),
        peak_dbfs=float(_db(np.abs(y).max())),
        loudest_rms_dbfs=peak_env,
        attack_s=attack_s,
    )


# --------------------------------------------------------------------------------------
# Starting knobs from an analysis.

#: Knobs :func:`estimate_fixed_knobs` sets (the rest keep ``base_unit``).
ESTIMATED_KNOBS: tuple[str, ...] = ("pitch_midi", "amp_attack_s", "gain_db")
# Amp attack times the voice is rendered at to calibrate the measured attack, and the
# calibrations made, by (voice config, knob names, base knobs).
_ATTACK_GRID = 16
_ATTACK_CACHE: dict[tuple[Any, ...], tuple[np.ndarray, np.ndarray]] = {}


def _as_analysis(a: AudioAnalysis | Mapping[str, Any]) -> AudioAnalysis:
    return a if isinstance(a, AudioAnalysis) else AudioAnalysis.from_dict(a)


def _attack_inverse(voice: Voice, base: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """Measured attack -> amp_attack_s: the voice at ``base`` rendered at
    :data:`_ATTACK_GRID` log-spaced attack times in one batch, each measured as
    :func:`analyze_audio` would. Returns (measured seconds, increasing; log attack).
    Cached: the voice is deterministic."""
    space = voice.knob_space
    key = (voice.config, space.names, tuple(base.tolist()))
    if key in _ATTACK_CACHE:
        return _ATTACK_CACHE[key]
    i = space.index("amp_attack_s")
    spec = space[i]
    grid = np.geomspace(spec.minimum, spec.maximum, _ATTACK_GRID)
    knobs = base.expand(_ATTACK_GRID, -1).clone()
    knobs[:, i] = spec.to_unit(torch.tensor(grid, dtype=knobs.dtype))
    with torch.no_grad():
        audio = voice(knobs.to(voice.noise.device)).cpu().double().numpy()
    sr = voice.config.sample_rate
    measured = np.array([_attack_s(*_envelope_db(row, sr)) for row in audio])
    # The measure is quantized to its 5 ms hop and smeared by its 50 ms frames, so
    # short attacks all read alike: each measured value maps to the geometric middle
    # of the attacks that give it, and the curve is made monotone first.
    measured = np.maximum.accumulate(measured)
    values = np.unique(measured)
    log_attack = np.array([np.log(grid[measured == v]).mean() for v in values])
    if len(_ATTACK_CACHE) >= 64:
        _ATTACK_CACHE.clear()
    _ATTACK_CACHE[key] = values, log_attack
    return values, log_attack


def estimate_fixed_knobs_batch(
    analyses: Sequence[AudioAnalysis | Mapping[str, Any]],
    voice: Voice,
    base_unit: torch.Tensor | None = None,
) -> tuple[torch.Tensor, list[dict[str, float]]]:
    """Starting knobs for N analysed sounds: :func:`estimate_fixed_knobs` batched
    (one calibration batch of 16 renders, one render per sound).

    :returns: (``[N, K]`` normalized knobs on the CPU, one dict per sound of the
        physical values set).
    """
    space = voice.knob_space
    base = space.default_unit() if base_unit is None else base_unit.detach().float().cpu()
    if base.shape != (len(space),):
        raise ValueError(f"base_unit must be [{len(space)}], got {tuple(base.shape)}")
    items = [_as_analysis(a) for a in analyses]
    n = len(items)
    knobs = base.expand(n, -1).clone()
    done: list[dict[str, float]] = [{} for _ in range(n)]
    if n == 0:
        return knobs, done
    names = set(space.names)

    def put(name: str, row: int, value: float) -> None:
        spec = space[space.index(name)]
        value = min(max(value, spec.minimum), spec.maximum)
        knobs[row, space.index(name)] = spec.to_unit(torch.tensor(value))
        done[row][name] = float(spec.to_physical(knobs[row, space.index(name)]))

    if "pitch_midi" in names:
        for r, a in enumerate(items):
            if math.isfinite(a.pitch_midi):
                put("pitch_midi", r, a.pitch_midi)
    if "amp_attack_s" in names:
        measured, log_attack = _attack_inverse(voice, base)
        for r, a in enumerate(items):
            if math.isfinite(a.attack_s):
                put("amp_attack_s", r, math.exp(np.interp(a.attack_s, measured, log_attack)))
    if "gain_db" in names:
        gi = space.index("gain_db")
        probe = knobs.clone()
        probe[:, gi] = space[gi].to_unit(torch.tensor(0.0))
        with torch.no_grad():
            audio = voice(probe.to(voice.noise.device))
        rendered = loudest_rms_dbfs(audio, voice.config.sample_rate)
        gain0 = float(space[gi].to_physical(probe[0, gi]))
        for r, a in enumerate(items):
            ok = math.isfinite(a.loudest_rms_dbfs) and a.loudest_rms_dbfs > _FLOOR_DB
            if ok and rendered[r] > _FLOOR_DB:
                put("gain_db", r, gain0 + a.loudest_rms_dbfs - float(rendered[r]))
    return knobs, done


def estimate_fixed_knobs(
    analysis: AudioAnalysis | Mapping[str, Any],
    voice: Voice,
    base_unit: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """Normalized knobs ``[K]`` of ``voice`` that start near an analysed sound.

    Starting from ``base_unit`` (None = the knob defaults):

    * ``pitch_midi`` := the analysed pitch, clamped to the knob range; unchanged when
      the sound is unpitched (``nan``);
    * ``amp_attack_s`` := the attack whose render, measured the way
      :func:`analyze_audio` measures, reads as the sound's ``attack_s`` (the measure
      reads ~45 ms for any attack under ~10 ms, so the raw value would be far off);
    * ``gain_db`` := the gain at which the voice, at these knobs, has the sound's
      loudest-50 ms level (one render at 0 dB; the gain is a pure factor, so the
      shift in dB is exact before clamping to the range).

    Deterministic (the voice's noise is frozen). ``voice`` must render at the sound's
    sample rate and length for the level to mean the same.

    :param analysis: an :class:`AudioAnalysis` or its :meth:`~AudioAnalysis.to_dict`.
    :returns: (knobs ``[K]`` on the CPU, physical values set, by knob name).
    """
    knobs, done = estimate_fixed_knobs_batch([analysis], voice, base_unit)
    return knobs[0], done[0]
