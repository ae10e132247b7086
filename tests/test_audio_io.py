"""Tests for aegym.audio_io: WAV round trips, formats, downmix, resampling, errors."""

from __future__ import annotations

import math
import os
import stat
import struct
import wave
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from aegym.audio_io import atomic_write_bytes, load_audio, read_audio, read_wav, write_wav


def _sine(freq_hz: float, sample_rate: int, n: int, amp: float = 0.5) -> np.ndarray:
    t = np.arange(n) / sample_rate
    return amp * np.sin(2 * np.pi * freq_hz * t)


def _peak_hz(x: torch.Tensor, sample_rate: int) -> float:
    """Spectral peak of ``x`` with parabolic interpolation between bins."""
    n = x.shape[-1]
    mag = torch.fft.rfft(x.double() * torch.hann_window(n, dtype=torch.float64)).abs()
    k = int(mag.argmax())
    a, b, c = (math.log(float(mag[i]) + 1e-30) for i in (k - 1, k, k + 1))
    offset = 0.5 * (a - c) / (a - 2 * b + c)
    return (k + offset) * sample_rate / n


def _wav_bytes(fmt_tag: int, channels: int, rate: int, bits: int, payload: bytes) -> bytes:
    """A minimal WAV file with an extra unknown chunk before 'data'."""
    block = channels * bits // 8
    fmt = struct.pack("<HHIIHH", fmt_tag, channels, rate, rate * block, block, bits)
    junk = b"JUNK" + struct.pack("<I", 3) + b"abc\x00"  # odd size -> pad byte
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + junk
        + b"data"
        + struct.pack("<I", len(payload))
        + payload
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


def _extensible_bytes(sub_tag: int, channels: int, rate: int, bits: int, payload: bytes) -> bytes:
    block = channels * bits // 8
    guid = struct.pack("<H", sub_tag) + b"\x00\x00\x00\x00\x10\x00\x80\x00\x00\xaa\x00\x38\x9b\x71"
    fmt = struct.pack("<HHIIHH", 0xFFFE, channels, rate, rate * block, block, bits)
    fmt += struct.pack("<HHI", 22, bits, 0) + guid
    body = (
        b"WAVE"
        + b"fmt "
        + struct.pack("<I", len(fmt))
        + fmt
        + b"data"
        + struct.pack("<I", len(payload))
        + payload
    )
    return b"RIFF" + struct.pack("<I", len(body)) + body


@pytest.mark.parametrize(("bits", "tol"), [(16, 1 / 32768), (24, 1 / 8388608), (32, 1e-7)])
def test_round_trip(tmp_path: Path, bits: int, tol: float) -> None:
    x = _sine(440.0, 16000, 4000, amp=0.9)
    x[0], x[1] = -1.0, 0.999
    path = write_wav(tmp_path / "a.wav", torch.from_numpy(x), 16000, bits=bits)  # type: ignore[arg-type]
    audio, rate = read_wav(path)
    assert rate == 16000
    assert audio.dtype == torch.float32 and audio.shape == (1, 4000)
    assert float((audio[0].double() - torch.from_numpy(x)).abs().max()) <= tol


def test_round_trip_stereo_ndarray(tmp_path: Path) -> None:
    x = np.stack([_sine(300.0, 8000, 800), _sine(500.0, 8000, 800, amp=0.2)])
    audio, rate = read_wav(write_wav(tmp_path / "s.wav", x, 8000, bits=24))
    assert rate == 8000 and audio.shape == (2, 800)
    np.testing.assert_allclose(audio.numpy(), x, atol=2e-7)


def test_write_clips_and_rejects_non_finite(tmp_path: Path) -> None:
    audio, _ = read_wav(write_wav(tmp_path / "c.wav", np.array([2.0, -3.0, 0.5]), 8000, 32))
    assert audio[0].tolist() == [1.0, -1.0, 0.5]
    with pytest.raises(ValueError, match="NaN or inf"):
        write_wav(tmp_path / "n.wav", np.array([0.0, np.nan]), 8000)
    with pytest.raises(ValueError, match="bits"):
        write_wav(tmp_path / "b.wav", np.zeros(4), 8000, bits=8)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"\[T\] or \[C, T\]"):
        write_wav(tmp_path / "e.wav", np.zeros((1, 2, 3)), 8000)
    assert not (tmp_path / "n.wav").exists()


def test_write_is_atomic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    dest = tmp_path / "atomic.wav"
    write_wav(dest, np.full(100, 0.25), 8000)
    before = dest.read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atomic.wav"]

    def boom(src: str, dst: str) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("aegym.audio_io.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_wav(dest, np.full(200, -0.5), 8000)
    # The old file is untouched and the temporary file was removed.
    assert dest.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["atomic.wav"]


@pytest.mark.parametrize(
    ("fmt_tag", "bits", "dtype", "scale", "offset"),
    [
        (1, 8, np.uint8, 128.0, 128.0),
        (1, 16, "<i2", 32768.0, 0.0),
        (1, 32, "<i4", 2147483648.0, 0.0),
        (3, 32, "<f4", 1.0, 0.0),
        (3, 64, "<f8", 1.0, 0.0),
    ],
)
def test_read_formats(
    tmp_path: Path, fmt_tag: int, bits: int, dtype: str, scale: float, offset: float
) -> None:
    x = _sine(200.0, 8000, 400, amp=0.75)
    stored = np.round(x * scale + offset) if fmt_tag == 1 else x
    payload = stored.astype(dtype).tobytes()
    path = tmp_path / "f.wav"
    path.write_bytes(_wav_bytes(fmt_tag, 1, 8000, bits, payload))
    audio, rate = read_wav(path)
    assert rate == 8000 and audio.shape == (1, 400)
    np.testing.assert_allclose(audio[0].numpy(), x, atol=1.0 / scale if fmt_tag == 1 else 1e-7)
    path.write_bytes(_extensible_bytes(fmt_tag, 1, 8000, bits, payload))
    audio_ext, _ = read_wav(path)
    assert torch.equal(audio, audio_ext)


def test_read_negative_24bit(tmp_path: Path) -> None:
    values = np.array([-8388608, -1, 0, 1, 8388607], dtype="<i4")
    payload = values.reshape(-1, 1).view(np.uint8)[:, :3].tobytes()
    path = tmp_path / "n24.wav"
    path.write_bytes(_wav_bytes(1, 1, 8000, 24, payload))
    audio, _ = read_wav(path)
    np.testing.assert_array_equal(audio[0].numpy(), (values / 8388608.0).astype(np.float32))


def test_stereo_downmix(tmp_path: Path) -> None:
    left, right = _sine(300.0, 16000, 1600), _sine(700.0, 16000, 1600, amp=0.3)
    path = write_wav(tmp_path / "st.wav", np.stack([left, right]), 16000, bits=32)
    mono = load_audio(path, 16000)
    assert mono.shape == (1600,)
    np.testing.assert_allclose(mono.numpy(), (left + right) / 2, atol=1e-6)
    both = load_audio(path, 16000, mono=False)
    assert both.shape == (2, 1600)


@pytest.mark.parametrize("rate", [22050, 44100])
def test_resample_preserves_frequency(tmp_path: Path, rate: int) -> None:
    freq = 1234.5
    path = write_wav(tmp_path / "r.wav", _sine(freq, rate, rate, amp=0.99), rate, bits=24)
    audio = load_audio(path, 16000)
    assert audio.dtype == torch.float32
    assert abs(audio.shape[0] - 16000) <= 1
    assert float(audio.abs().max()) <= 1.0
    assert _peak_hz(audio, 16000) == pytest.approx(freq, rel=0.01)


def test_error_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.wav"
    with pytest.raises(ValueError, match=r"nope\.wav.*no such audio file"):
        read_wav(missing)
    with pytest.raises(ValueError, match=r"nope\.wav"):
        load_audio(missing, 16000)


def test_error_garbage(tmp_path: Path) -> None:
    path = tmp_path / "garbage.wav"
    path.write_bytes(np.random.default_rng(0).bytes(500))
    with pytest.raises(
        ValueError, match=r"garbage\.wav: cannot read as audio.*formats read:.*FLAC"
    ):
        read_wav(path)
    path.write_bytes(b"")
    with pytest.raises(ValueError, match=r"garbage\.wav: cannot read as audio"):
        read_wav(path)


def test_truncated_files(tmp_path: Path) -> None:
    ints = np.arange(100, dtype="<i2") * 100
    good = _wav_bytes(1, 1, 8000, 16, ints.tobytes())
    path = tmp_path / "trunc.wav"
    path.write_bytes(good[:20])  # header cut inside the fmt chunk
    with pytest.raises(ValueError, match=r"trunc\.wav: cannot read as audio.*fmt"):
        read_wav(path)
    path.write_bytes(good[:-11])  # data cut short: the complete frames are read
    audio, rate = read_wav(path)
    assert rate == 8000 and audio.shape == (1, 94)
    np.testing.assert_array_equal(audio[0].numpy(), (ints[:94] / 32768.0).astype(np.float32))
    path.write_bytes(good[:12])  # RIFF/WAVE header only
    with pytest.raises(ValueError, match=r"trunc\.wav: cannot read as audio"):
        read_wav(path)


def test_other_encodings_and_formats(tmp_path: Path) -> None:
    # A-law WAV, which the former hand-written parser refused, decodes now.
    alaw = tmp_path / "alaw.wav"
    alaw.write_bytes(_wav_bytes(6, 1, 8000, 8, bytes([0xD5] * 50 + [0x2A] * 50)))
    audio, _ = read_wav(alaw)
    assert audio.shape == (1, 100) and float(audio[0, :50].abs().max()) < 0.01
    # 0x2A xor 0x55 = 0x7F: G.711's largest negative magnitude, -32256 / 32768.
    assert torch.all(audio[0, 50:] == -32256 / 32768)
    path = tmp_path / "odd.wav"
    path.write_bytes(_wav_bytes(0x1234, 1, 8000, 16, bytes(100)))
    with pytest.raises(ValueError, match=r"odd\.wav: cannot read as audio"):
        read_wav(path)
    # FLAC and OGG/Vorbis read like WAV (through load_audio: resampled, mono).
    x = _sine(440.0, 22_050, 22_050)
    for name, fmt, tol in (("t.flac", "FLAC", 1e-4), ("t.ogg", "OGG", 0.05)):
        sf.write(tmp_path / name, x, 22_050, format=fmt)
        back, rate = read_audio(tmp_path / name)
        assert rate == 22_050 and back.shape[0] == 1
        assert np.abs(back[0, : x.shape[0]].numpy() - x).max() < tol
        mono = load_audio(tmp_path / name, 16_000)
        assert _peak_hz(mono, 16_000) == pytest.approx(440.0, rel=0.01)


def test_non_finite_float_data_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "nan.wav"
    payload = np.array([0.1, np.nan, 0.2], "<f4").tobytes()
    path.write_bytes(_wav_bytes(3, 1, 8000, 32, payload))
    with pytest.raises(ValueError, match=r"nan\.wav: audio data contains NaN or inf"):
        read_wav(path)


def test_error_silent(tmp_path: Path) -> None:
    path = write_wav(tmp_path / "quiet.wav", np.zeros(1000), 16000)
    audio, _ = read_wav(path)  # reading is fine; using it as audio to match is not
    assert float(audio.abs().max()) == 0.0
    with pytest.raises(ValueError, match=r"quiet\.wav.*silent"):
        load_audio(path, 16000)


def test_interoperates_with_stdlib_wave(tmp_path: Path) -> None:
    x = np.stack([_sine(300.0, 8000, 500), _sine(450.0, 8000, 500)])
    ints = np.round(x * 32768).astype("<i2")
    path = tmp_path / "stdlib.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(2)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(ints.T.tobytes())
    audio, rate = read_wav(path)
    assert rate == 8000
    np.testing.assert_array_equal(audio.numpy(), (ints / 32768.0).astype(np.float32))

    ours = write_wav(tmp_path / "ours.wav", x, 8000, bits=16)
    with wave.open(str(ours), "rb") as w:
        assert (w.getnchannels(), w.getsampwidth(), w.getframerate()) == (2, 2, 8000)
        frames = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2).T
    np.testing.assert_array_equal(frames, ints)


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_respect_the_umask(tmp_path: Path, umask: int) -> None:
    old = os.umask(umask)
    try:
        wav = write_wav(tmp_path / "a.wav", np.zeros(100, np.float32), 16_000)
        blob = atomic_write_bytes(tmp_path / "sub" / "b.bin", b"x")
    finally:
        os.umask(old)
    for path in (wav, blob):
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask


def test_rewriting_a_file_keeps_its_mode(tmp_path: Path) -> None:
    path = atomic_write_bytes(tmp_path / "c.bin", b"1")
    path.chmod(0o640)
    atomic_write_bytes(path, b"22")
    assert stat.S_IMODE(path.stat().st_mode) == 0o640 and path.read_bytes() == b"22"
    assert list(tmp_path.iterdir()) == [path]  # no temp file left
