"""WAV reading and writing on the standard library and numpy.

``torchaudio.load`` needs torchcodec, which aegym does not depend on, so this module
parses RIFF/WAVE itself. Supported sample formats:

=============================  =========  ==========================
format tag                     bits       decoded as
=============================  =========  ==========================
1 (PCM)                        8          unsigned, ``(x - 128) / 128``
1 (PCM)                        16/24/32   signed, ``x / 2**(bits-1)``
3 (IEEE float)                 32/64      as stored, clipped to [-1, 1]
0xFFFE (WAVE_FORMAT_EXTENSIBLE) any above  by its sub-format (PCM or float)
=============================  =========  ==========================

Chunks other than ``fmt`` and ``data`` (``LIST``, ``fact``, ``cue``, ...) are skipped.
Every error is a :class:`ValueError` whose message names the file and the problem.
"""

from __future__ import annotations

import math
import os
import stat
import struct
import tempfile
from pathlib import Path
from typing import Literal

import numpy as np
import torch
import torchaudio.functional as AF

__all__ = ["SILENCE_PEAK", "load_audio", "read_wav", "write_wav"]

#: Peak amplitude below which :func:`load_audio` calls a file silent (about -120 dBFS).
SILENCE_PEAK = 1e-6

_WAVE_FORMAT_PCM = 0x0001
_WAVE_FORMAT_IEEE_FLOAT = 0x0003
_WAVE_FORMAT_EXTENSIBLE = 0xFFFE
# KSDATAFORMAT_SUBTYPE_* GUIDs are the format tag followed by this fixed tail.
_GUID_TAIL = b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"

PathLike = str | os.PathLike[str]


def _fail(path: PathLike, problem: str) -> ValueError:
    return ValueError(f"{os.fspath(path)}: {problem}")


def _iter_chunks(path: PathLike, data: bytes) -> dict[bytes, tuple[int, int]]:
    """Map chunk id -> (offset, size) of the first chunk of each id after the header."""
    chunks: dict[bytes, tuple[int, int]] = {}
    pos = 12
    while pos + 8 <= len(data):
        chunk_id = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        start = pos + 8
        if start + size > len(data):
            if chunk_id in (b"fmt ", b"data"):
                raise _fail(
                    path,
                    f"truncated WAV file: {chunk_id.decode('latin-1').strip()!r} chunk "
                    f"declares {size} bytes but only {len(data) - start} remain",
                )
            break  # a truncated trailing chunk we would skip anyway
        chunks.setdefault(chunk_id, (start, size))
        pos = start + size + (size & 1)  # chunks are padded to even sizes
    return chunks


def _decode(path: PathLike, raw: bytes, fmt_tag: int, bits: int) -> np.ndarray:
    """Decode little-endian sample bytes to float64 in [-1, 1]."""
    if fmt_tag == _WAVE_FORMAT_PCM:
        if bits == 8:
            return (np.frombuffer(raw, np.uint8).astype(np.float64) - 128.0) / 128.0
        if bits == 16:
            return np.frombuffer(raw, "<i2").astype(np.float64) / 32768.0
        if bits == 24:
            b = np.frombuffer(raw, np.uint8).reshape(-1, 3)
            # Put the 3 bytes in the top of an int32, then shift back to sign-extend.
            wide = np.zeros((b.shape[0], 4), np.uint8)
            wide[:, 1:] = b
            return (wide.view("<i4")[:, 0] >> 8).astype(np.float64) / 8388608.0
        if bits == 32:
            return np.frombuffer(raw, "<i4").astype(np.float64) / 2147483648.0
        raise _fail(path, f"unsupported PCM bit depth {bits} (supported: 8, 16, 24, 32)")
    if fmt_tag == _WAVE_FORMAT_IEEE_FLOAT:
        if bits not in (32, 64):
            raise _fail(path, f"unsupported float bit depth {bits} (supported: 32, 64)")
        x = np.frombuffer(raw, "<f4" if bits == 32 else "<f8").astype(np.float64)
        if not np.isfinite(x).all():
            raise _fail(path, "float WAV data contains NaN or inf samples")
        return np.clip(x, -1.0, 1.0)
    raise _fail(
        path,
        f"unsupported WAV format tag 0x{fmt_tag:04X} (supported: PCM 0x0001, "
        "IEEE float 0x0003, and WAVE_FORMAT_EXTENSIBLE with those sub-formats)",
    )


def read_wav(path: PathLike) -> tuple[torch.Tensor, int]:
    """Read a RIFF/WAVE file.

    :param path: the WAV file.
    :returns: ``(audio, sample_rate)`` with ``audio`` a float32 tensor ``[C, T]`` in
        ``[-1, 1]`` (integer PCM scaled by ``2**(bits-1)``; float data clipped).
    :raises ValueError: the file is missing, is not RIFF/WAVE, is truncated, or uses an
        unsupported format; the message names the file.
    """
    p = Path(path)
    if not p.is_file():
        raise _fail(path, "no such WAV file")
    data = p.read_bytes()
    if len(data) < 12 or data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise _fail(path, "not a RIFF/WAVE file (missing 'RIFF....WAVE' header)")
    chunks = _iter_chunks(path, data)
    if b"fmt " not in chunks:
        raise _fail(path, "truncated or invalid WAV file: no 'fmt ' chunk")
    fmt_pos, fmt_size = chunks[b"fmt "]
    if fmt_size < 16:
        raise _fail(path, f"invalid 'fmt ' chunk of {fmt_size} bytes (need >= 16)")
    fmt_tag, channels, sample_rate, _, block_align, bits = struct.unpack_from(
        "<HHIIHH", data, fmt_pos
    )
    if fmt_tag == _WAVE_FORMAT_EXTENSIBLE:
        if fmt_size < 40:
            raise _fail(path, "WAVE_FORMAT_EXTENSIBLE 'fmt ' chunk shorter than 40 bytes")
        guid = data[fmt_pos + 24 : fmt_pos + 40]
        if guid[2:] != _GUID_TAIL:
            raise _fail(path, f"unsupported WAVE_FORMAT_EXTENSIBLE sub-format {guid.hex()}")
        (fmt_tag,) = struct.unpack_from("<H", guid)
    if channels < 1 or sample_rate < 1:
        raise _fail(path, f"invalid header: {channels} channels at {sample_rate} Hz")
    if bits % 8 or block_align != channels * bits // 8:
        raise _fail(
            path,
            f"unsupported layout: {bits} bits/sample, block align {block_align} "
            f"for {channels} channels (only byte-aligned, packed samples are supported)",
        )
    if b"data" not in chunks:
        raise _fail(path, "truncated or invalid WAV file: no 'data' chunk")
    data_pos, data_size = chunks[b"data"]
    if data_size % block_align:
        raise _fail(
            path,
            f"truncated WAV data: {data_size} bytes is not a whole number of "
            f"{block_align}-byte frames",
        )
    samples = _decode(path, data[data_pos : data_pos + data_size], fmt_tag, bits)
    audio = samples.reshape(-1, channels).T  # interleaved frames -> [C, T]
    return torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)), int(sample_rate)


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
        float output stays within what :func:`read_wav` returns).
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
    channels = x.shape[0]
    frames = x.T  # [T, C] interleaves when flattened
    if bits == 32:
        fmt_tag, payload = _WAVE_FORMAT_IEEE_FLOAT, frames.astype("<f4").tobytes()
    else:
        scale = 2.0 ** (bits - 1)
        ints = np.clip(np.round(frames * scale), -scale, scale - 1).astype("<i4")
        if bits == 16:
            payload = ints.astype("<i2").tobytes()
        else:  # 24-bit: low three bytes of each little-endian int32
            payload = ints.reshape(-1, 1).view(np.uint8)[:, :3].tobytes()
        fmt_tag = _WAVE_FORMAT_PCM
    block_align = channels * bits // 8
    fmt = struct.pack(
        "<HHIIHH", fmt_tag, channels, sample_rate, sample_rate * block_align, block_align, bits
    )
    chunks = [b"fmt " + struct.pack("<I", len(fmt)) + fmt]
    if fmt_tag == _WAVE_FORMAT_IEEE_FLOAT:  # non-PCM files carry a 'fact' chunk
        chunks.append(b"fact" + struct.pack("<II", 4, frames.shape[0]))
    chunks.append(
        b"data" + struct.pack("<I", len(payload)) + payload + b"\x00" * (len(payload) & 1)
    )
    body = b"WAVE" + b"".join(chunks)
    blob = b"RIFF" + struct.pack("<I", len(body)) + body

    atomic_write_bytes(dest, blob)
    return dest


def load_audio(path: PathLike, sample_rate: int, mono: bool = True) -> torch.Tensor:
    """Read a WAV file, downmix and resample it.

    :param path: the WAV file.
    :param sample_rate: rate to resample to (``torchaudio.functional.resample``).
    :param mono: downmix to one channel (mean of the channels) and return ``[T]``;
        with ``mono=False`` the channels are kept and the result is ``[C, T]``.
    :returns: float32 audio at ``sample_rate`` in ``[-1, 1]`` (clipped after resampling).
    :raises ValueError: as :func:`read_wav`, or the file is silent (peak below
        :data:`SILENCE_PEAK`).
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate < 1:
        raise ValueError(f"sample_rate must be a positive int, got {sample_rate!r}")
    audio, file_rate = read_wav(path)
    if audio.shape[-1] == 0:
        raise _fail(path, "WAV file has no samples")
    peak = float(audio.abs().max())
    if peak < SILENCE_PEAK:
        raise _fail(
            path,
            f"WAV file is silent (peak {peak:.3g} < {SILENCE_PEAK:g}); a target needs sound",
        )
    if mono:
        audio = audio.mean(0)
    if file_rate != sample_rate:
        g = math.gcd(file_rate, sample_rate)
        # Band-limited resampling can overshoot full-scale peaks slightly; keep [-1, 1].
        audio = AF.resample(audio, file_rate // g, sample_rate // g).clamp(-1.0, 1.0)
    return audio.contiguous()
