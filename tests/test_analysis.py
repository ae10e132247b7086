"""Target analysis: pitch by pYIN, level and attack, on signals with known answers."""

import math

import numpy as np
import pytest
import torch

from aegym.analysis import AudioAnalysis, analyze_audio
from aegym.synth import Patch, SynthConfig, Voice

SR = 16_000


def harmonic_tone(f0: float, seconds: float = 0.5, sr: int = SR, n_harm: int = 8) -> np.ndarray:
    t = np.arange(round(seconds * sr)) / sr
    parts = [np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, n_harm + 1) if f0 * k < sr / 2]
    y = np.sum(parts, axis=0)
    return 0.5 * y / np.abs(y).max()


def semitones(a: float, b: float) -> float:
    return abs(12 * math.log2(a / b))


@pytest.mark.parametrize("f0", [40.0, 61.7, 110.0, 261.6, 440.0, 987.8, 2000.0])
def test_pitch_of_harmonic_tones_within_a_semitone(f0):
    res = analyze_audio(harmonic_tone(f0), SR)
    assert res.pitched and res.voiced_fraction > 0.8
    assert semitones(res.f0_hz, f0) < 1.0
    assert res.pitch_midi == pytest.approx(69 + 12 * math.log2(f0 / 440), abs=1.0)


@pytest.mark.parametrize("snr_db", [20.0, 10.0, 0.0])
def test_noisy_tones_degrade_gracefully(snr_db):
    rng = np.random.default_rng(0)
    clean = harmonic_tone(220.0)
    noise = rng.standard_normal(clean.shape)
    noise *= np.sqrt(np.mean(clean**2) / np.mean(noise**2)) * 10 ** (-snr_db / 20)
    res = analyze_audio(clean + noise, SR)
    if snr_db >= 10:
        assert res.pitched and semitones(res.f0_hz, 220.0) < 1.0
    else:  # buried: either the right pitch or an honest "unpitched", never a wrong note
        assert not res.pitched or semitones(res.f0_hz, 220.0) < 1.0


def test_noise_is_unpitched_not_an_error():
    noise = 0.3 * np.random.default_rng(1).standard_normal(SR // 2)
    res = analyze_audio(noise, SR)
    assert not res.pitched and math.isnan(res.pitch_midi) and res.voiced_fraction < 0.2
    assert np.isfinite(res.rms_dbfs) and res.attack_s >= 0


def test_levels_and_attack_of_a_shaped_sine():
    t = np.arange(SR) / SR
    env = np.clip(t / 0.1, 0.0, 1.0)  # 100 ms linear attack, then steady
    res = analyze_audio(0.5 * env * np.sin(2 * np.pi * 330 * t), SR)
    assert res.peak_dbfs == pytest.approx(20 * math.log10(0.5), abs=0.05)
    assert res.loudest_rms_dbfs == pytest.approx(20 * math.log10(0.5 / math.sqrt(2)), abs=0.1)
    # -40 dB of a linear ramp is at 1 ms, -1 dB at 89 ms; 50 ms frames smear both a little.
    assert 0.06 <= res.attack_s <= 0.12
    assert semitones(res.f0_hz, 330.0) < 1.0


def test_reads_the_synths_own_pitch():
    voice = Voice(SynthConfig(SR, duration_s=0.5))
    audio = voice.render_patch(Patch({"pitch_midi": 45.0, "cutoff_hz": 3000.0}))
    res = analyze_audio(audio, SR)
    assert abs(res.pitch_midi - 45.0) < 0.5
    assert isinstance(res, AudioAnalysis) and set(res.to_dict()) >= {"f0_hz", "attack_s"}


def test_other_sample_rates_and_tensor_input():
    res = analyze_audio(torch.tensor(harmonic_tone(150.0, sr=44_100), dtype=torch.float32), 44_100)
    assert semitones(res.f0_hz, 150.0) < 1.0


def test_bad_inputs_name_the_problem():
    with pytest.raises(ValueError, match="mono"):
        analyze_audio(np.zeros((2, SR)), SR)
    with pytest.raises(ValueError, match=r"at least 0\.1 s"):
        analyze_audio(np.zeros(100), SR)
    with pytest.raises(ValueError, match="NaN or inf"):
        analyze_audio(np.full(SR, np.nan), SR)
    with pytest.raises(ValueError, match="sample_rate"):
        analyze_audio(np.zeros(SR), 1000)
