"""Audio file reading (any format libsndfile reads) and atomic WAV writing.

Reading goes through `soundfile <https://python-soundfile.readthedocs.io>`_ (libsndfile,
bundled in its wheels): WAV (PCM 8–32 bit, float, A-/µ-law, WAVE_FORMAT_EXTENSIBLE),
FLAC, OGG/Vorbis, AIFF and the rest of :func:`soundfile.available_formats`. It replaced
a hand-written RIFF parser, which knew four WAV encodings and nothing else. Integer PCM
decodes as ``x / 2**(bits-1)``; float data is kept as stored, then clipped to [-1, 1]
(NaN/inf are refused). libsndfile reads a file whose last data frames are cut off up to
its last complete frame, as audio tools do.

Every error is a :class:`ValueError` whose message names the file and the problem.
"""

from __future__ import annotations

import io
import math
import os
import stat
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
import soundfile as sf
import torch
import torchaudio.functional as AF

__all__ = ["SILENCE_PEAK", "load_audio", "read_audio", "read_wav", "write_wav"]

#: Peak amplitude below which :func:`load_audio` calls a file silent (about -120 dBFS).
SILENCE_PEAK = 1e-6

PathLike = str | os.PathLike[str]


def _fail(path: PathLike, problem: str) -> ValueError:
    return ValueError(f"{os.fspath(path)}: {problem}")


def read_audio(path: PathLike) -> tuple[torch.Tensor, int]:
    """Read an audio file (WAV, FLAC, OGG, AIFF, ... — whatever libsndfile reads).

    :param path: the file.
    :returns: ``(audio, sample_rate)`` with ``audio`` a float32 tensor ``[C, T]`` in
        ``[-1, 1]`` (integer PCM scaled by ``2**(bits-1)``; float data clipped).
    :raises ValueError: the file is missing, not an audio file libsndfile knows, broken,
        or holds NaN/inf samples; the message names the file.
    """
    p = Path(path)
    if not p.is_file():
        raise _fail(path, "no such audio file")
    try:
        data, sample_rate = sf.read(p, dtype="float64", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, TypeError) as err:
        problem = getattr(err, "error_string", None) or str(err)
        raise _fail(
            path,
            f"cannot read as audio ({problem}); formats read: "
            f"{', '.join(sorted(sf.available_formats()))}",
        ) from None
    if not np.isfinite(data).all():
        raise _fail(path, "audio data contains NaN or inf samples")
    audio = np.clip(data, -1.0, 1.0).T  # [T, C] -> [C, T]
    return torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), int(sample_rate)


#: Former name of :func:`read_audio` (it read WAV only), kept for existing callers.
read_wav = read_audio


def _file_mode(dest: Path) -> int:
    """Permission bits for ``dest``: its current ones if it exists, else 0o666 & ~umask."""
    try:
        return stat.S_IMODE(dest.stat().st_mode)
    except FileNotFoundError:
        umask = os.umask(0)  # the only portable way to read it: set and restore at once
        os.umask(umask)
        return 0o666 & ~umask


def atomic_write_bytes(path: PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temp file in the same folder and ``os.replace``.

    Readers never see a partial file, a crash never leaves one under ``path``, and a
    failed write removes its temp file. Creates missing parent folders. The file gets
    the mode a plain ``open(path, "w")`` would give: an existing file keeps its mode, a
    new one gets ``0o666`` less the process umask (``mkstemp`` alone would make every
    file private, ``0o600``).
    """
    dest = Path(path)
    dest.parent.mkdir(parents=True, exist_ok=True)
    mode = _file_mode(dest)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".tmp", dir=dest.parent)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, dest)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return dest


def write_wav(
    path: PathLike,
    audio: torch.Tensor | np.ndarray,
    sample_rate: int,
    bits: Literal[16, 24, 32] = 16,
) -> Path:
    """Write ``audio`` to a WAV file atomically.

    The file is written to a temporary file in the same directory and moved into place
    with :func:`os.replace`, so readers never see a partial file and a failed write
    leaves no temporary file behind.

    :param path: destination file (missing folders are created).
    :param audio: ``[T]`` (mono) or ``[C, T]`` samples, nominally in ``[-1, 1]``. Values
        outside are **clipped** to ``[-1, 1]`` (integer formats cannot hold them and
        float output stays within what :func:`read_audio` returns).
    :param sample_rate: sample rate in Hz.
    :param bits: ``16`` or ``24`` for integer PCM, ``32`` for 32-bit IEEE float.
    :returns: the destination path.
    :raises ValueError: bad shape, empty or non-finite audio, bad rate or bit depth.
    """
    dest = Path(path)
    if bits not in (16, 24, 32):
        raise ValueError(f"{dest}: bits must be 16, 24 or 32 (float), got {bits!r}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1:
        raise ValueError(f"{dest}: sample_rate must be a positive int, got {sample_rate!r}")
    if isinstance(audio, torch.Tensor):
        audio = audio.detach().cpu().double().numpy()
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim == 1:
        x = x[None]
    if x.ndim != 2 or x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"{dest}: audio must be [T] or [C, T] and non-empty, got {x.shape}")
    if not np.isfinite(x).all():
        raise ValueError(f"{dest}: audio contains NaN or inf samples")
    x = np.clip(x, -1.0, 1.0)
    frames = x.T  # [T, C]
    if bits == 32:
        samples, subtype = frames.astype(np.float32), "FLOAT"
    else:
        # Scale and round ourselves (libsndfile's own float->int conversion scales by
        # 2**(bits-1) - 1): full scale is 2**(bits-1), the inverse of the reader.
        scale = 2.0 ** (bits - 1)
        ints = np.clip(np.round(frames * scale), -scale, scale - 1)
        if bits == 16:
            samples, subtype = ints.astype(np.int16), "PCM_16"
        else:  # libsndfile takes 24-bit samples in the top bits of an int32
            samples, subtype = ints.astype(np.int32) << 8, "PCM_24"
    buf = io.BytesIO()
    sf.write(buf, samples, sample_rate, subtype=subtype, format="WAV")
    blob = buf.getvalue()

    atomic_write_bytes(dest, blob)
    return dest


def load_audio(path: PathLike, sample_rate: int, mono: bool = True) -> torch.Tensor:
    """Read an audio file (see :func:`read_audio`), downmix and resample it.

    :param path: the audio file (WAV, FLAC, OGG, ...).
    :param sample_rate: rate to resample to (``torchaudio.functional.resample``).
    :param mono: downmix to one channel (mean of the channels) and return ``[T]``;
        with ``mono=False`` the channels are kept and the result is ``[C, T]``.
    :returns: float32 audio at ``sample_rate`` in ``[-1, 1]`` (clipped after resampling).
    :raises ValueError: as :func:`read_audio`, or the file is silent (peak below
        :data:`SILENCE_PEAK`).
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1:
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    audio, file_rate = read_audio(path)
    if audio.shape[-1] == 0:
        raise _fail(path, "audio file has no samples")
    peak = float(audio.abs().max())
    if peak < SILENCE_PEAK:
        raise _fail(
            path,
            f"audio file is silent (peak {peak:.3g} < {SILENCE_PEAK:g}); a target needs sound",
        )
    if mono:
        audio = audio.mean(0)
    if file_rate != sample_rate:
        g = math.gcd(file_rate, sample_rate)
        # Band-limited resampling can overshoot full-scale peaks slightly; keep [-1, 1].
        audio = AF.resample(audio, file_rate // g, sample_rate // g).clamp(-1.0, 1.0)
    return audio.contiguous()
