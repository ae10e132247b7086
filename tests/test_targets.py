"""Tests for aegym.targets: seeded sets, split, in-domain knobs, generators, WAV targets."""

from __future__ import annotations

import hashlib
import pickle
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from aegym import targets as targets_mod
from aegym.audio_io import write_wav
from aegym.features import rms_dbfs
from aegym.synth import SynthConfig, Voice
from aegym.targets import (
    MIN_IN_DOMAIN_RMS_DBFS,
    OUT_OF_DOMAIN_GENERATORS,
    SET_VERSIONS,
    TARGET_SETS,
    Target,
    TargetSet,
    load_wav_targets,
    make_target_set,
    resolve_targets,
)


@pytest.fixture(scope="module")
def test_set() -> TargetSet:
    return make_target_set("test")


@pytest.fixture(scope="module")
def train_set() -> TargetSet:
    return make_target_set("train")


def _digests(ts: TargetSet) -> set[str]:
    return {hashlib.sha256(t.audio.numpy().tobytes()).hexdigest() for t in ts}


def _sine(freq_hz: float, rate: int, seconds: float, amp: float = 0.5) -> np.ndarray:
    return amp * np.sin(2 * np.pi * freq_hz * np.arange(int(rate * seconds)) / rate)


# ----------------------------------------------------------------------- generated sets


def test_sizes_meet_documented_minimums(test_set: TargetSet, train_set: TargetSet) -> None:
    assert test_set.kind_counts() == {"in_domain": 64, "out_of_domain": 24}
    assert train_set.kind_counts() == {"in_domain": 128, "out_of_domain": 48}
    assert test_set.kind_counts()["in_domain"] >= 50
    assert test_set.kind_counts()["out_of_domain"] >= 20
    for name, ts in (("test", test_set), ("train", train_set)):
        spec = TARGET_SETS[name]
        assert len(ts) == spec.n_in_domain + spec.n_out_of_domain
        assert (ts.name, ts.split, ts.version) == (name, name, "v1")
        assert ts.version in SET_VERSIONS
        assert ts.sample_rate == 16000 and ts.num_samples == 16000
        assert len(set(ts.names)) == len(ts)


def test_sets_are_deterministic(test_set: TargetSet, train_set: TargetSet) -> None:
    targets_mod._build_target_set.cache_clear()  # regenerate from scratch
    for name, first in (("test", test_set), ("train", train_set)):
        again = make_target_set(name)
        assert again.seed == first.seed
        assert again.names == first.names
        assert torch.equal(again.audio_batch(), first.audio_batch())
        ind = first.subset("in_domain")
        assert torch.equal(again.subset("in_domain").knobs_batch(), ind.knobs_batch())


def test_train_and_test_are_disjoint(test_set: TargetSet, train_set: TargetSet) -> None:
    assert test_set.seed != train_set.seed
    assert not _digests(test_set) & _digests(train_set)
    test_knobs = test_set.subset("in_domain").knobs_batch()
    train_knobs = train_set.subset("in_domain").knobs_batch()
    assert float(torch.cdist(test_knobs, train_knobs).min()) > 1e-3


def test_every_target_is_finite_audible_and_bounded(
    test_set: TargetSet, train_set: TargetSet
) -> None:
    for ts in (test_set, train_set):
        audio = ts.audio_batch()
        assert audio.dtype == torch.float32 and audio.shape == (len(ts), 16000)
        assert bool(torch.isfinite(audio).all())
        assert float(audio.abs().max()) <= 1.0
        assert float(rms_dbfs(audio).min()) >= MIN_IN_DOMAIN_RMS_DBFS - 1e-3


def test_in_domain_knobs_rerender_to_the_same_audio(test_set: TargetSet) -> None:
    ind = test_set.subset("in_domain")
    knobs = ind.knobs_batch()
    voice = Voice(SynthConfig(sample_rate=16000, duration_s=1.0))
    assert knobs.shape == (len(ind), len(voice.knob_space))
    assert float(knobs.min()) >= 0.0 and float(knobs.max()) <= 1.0
    with torch.no_grad():
        rendered = voice(knobs)
    torch.testing.assert_close(rendered, ind.audio_batch(), atol=1e-5, rtol=0)
    patch = ind[0].metadata["patch"]
    assert set(patch) == set(voice.knob_space.names)


def test_out_of_domain_generators_present(test_set: TargetSet) -> None:
    ood = test_set.subset("out_of_domain")
    gens = [t.metadata["generator"] for t in ood]
    assert set(gens) == set(OUT_OF_DOMAIN_GENERATORS)
    for g in OUT_OF_DOMAIN_GENERATORS:
        assert gens.count(g) == len(ood) // len(OUT_OF_DOMAIN_GENERATORS)
    peaks = ood.audio_batch().abs().amax(-1)
    torch.testing.assert_close(peaks, torch.full_like(peaks, 10 ** (-3 / 20)))
    assert all(t.unit_knobs is None for t in ood)
    with pytest.raises(ValueError, match="subset\\('in_domain'\\)"):
        test_set.knobs_batch()


def test_karplus_strong_is_harmonic_at_its_f0(test_set: TargetSet) -> None:
    for t in test_set.subset("out_of_domain"):
        if t.metadata["generator"] != "karplus_strong":
            continue
        n = t.num_samples
        mag = torch.fft.rfft(t.audio.double() * torch.hann_window(n, dtype=torch.float64)).abs()
        peak_hz = float(mag.argmax()) * t.sample_rate / n
        harmonic = peak_hz / t.metadata["f0_hz"]
        assert harmonic == pytest.approx(round(harmonic), abs=0.03 * round(harmonic))


def test_out_of_domain_generation_is_fast_and_prefix_stable() -> None:
    start = time.perf_counter()
    small = make_target_set("speed", n_in_domain=0, n_out_of_domain=20, seed=3)
    assert time.perf_counter() - start < 2.0
    larger = make_target_set("speed", n_in_domain=0, n_out_of_domain=24, seed=3)
    assert torch.equal(small.audio_batch(), larger.audio_batch()[:20])


def test_seed_and_name_change_the_set() -> None:
    kw = {"duration_s": 0.25, "n_in_domain": 4, "n_out_of_domain": 4}
    base = make_target_set("custom", **kw)
    assert base.split == "custom"
    assert torch.equal(base.audio_batch(), make_target_set("custom", **kw).audio_batch())
    others = [
        make_target_set("custom", seed=1, **kw),
        make_target_set("other", **kw),
        make_target_set("custom", seed=2, **kw),
    ]
    digests = [_digests(base), *(_digests(o) for o in others)]
    for i in range(len(digests)):
        for j in range(i + 1, len(digests)):
            assert not digests[i] & digests[j]


def test_other_rates_and_durations() -> None:
    ts = make_target_set("sr", sample_rate=22050, duration_s=0.5, n_in_domain=3, n_out_of_domain=4)
    assert ts.sample_rate == 22050 and ts.num_samples == 11025
    assert ts.duration_s == pytest.approx(0.5)


def test_make_target_set_errors() -> None:
    with pytest.raises(ValueError, match="unknown target set version 'v99'"):
        make_target_set("test", version="v99")
    with pytest.raises(ValueError, match="at least one target"):
        make_target_set("x", n_in_domain=0, n_out_of_domain=0)
    with pytest.raises(ValueError, match="n_in_domain"):
        make_target_set("x", n_in_domain=-1)
    with pytest.raises(ValueError, match="duration_s"):
        make_target_set("x", duration_s=0.0)


def test_target_set_container(test_set: TargetSet) -> None:
    assert test_set[0] is test_set.targets[0]
    assert test_set["fm_000"].metadata["generator"] == "fm"
    assert list(test_set)[-1] is test_set[-1]
    with pytest.raises(KeyError, match="no target named"):
        test_set["nope"]
    with pytest.raises(ValueError, match="no 'wav' targets"):
        test_set.subset("wav")
    with pytest.raises(ValueError, match="kind must be one of"):
        test_set.subset("bogus")  # type: ignore[arg-type]
    assert "88 targets" in repr(test_set)
    with pytest.raises(TypeError):
        test_set[0].metadata["x"] = 1  # type: ignore[index]


def test_sets_pickle(test_set: TargetSet) -> None:
    small = TargetSet("s", "v0", "test", test_set.targets[60:66], test_set.seed)
    back = pickle.loads(pickle.dumps(small))
    assert back.names == small.names and back.seed == small.seed
    assert torch.equal(back.audio_batch(), small.audio_batch())
    assert torch.equal(
        back.subset("in_domain").knobs_batch(), small.subset("in_domain").knobs_batch()
    )
    assert dict(back[-1].metadata) == dict(small[-1].metadata)
    with pytest.raises(TypeError):
        back[0].metadata["x"] = 1  # type: ignore[index]


def test_returned_sets_do_not_share_tensors_with_the_cache() -> None:
    kw = {"duration_s": 0.25, "n_in_domain": 2, "n_out_of_domain": 2}
    a = make_target_set("mut", **kw)
    a[0].audio.zero_()
    b = make_target_set("mut", **kw)
    assert float(b[0].audio.abs().max()) > 0


def test_target_validation() -> None:
    audio = torch.zeros(100)
    with pytest.raises(ValueError, match="kind must be one of"):
        Target("a", audio, 16000, "synth")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="needs its unit_knobs"):
        Target("a", audio, 16000, "in_domain")
    with pytest.raises(ValueError, match="float32 tensor"):
        Target("a", torch.zeros(2, 100), 16000, "wav")
    with pytest.raises(ValueError, match="finite"):
        Target("a", torch.full((10,), float("nan")), 16000, "wav")
    with pytest.raises(ValueError, match="is empty"):
        TargetSet("s", "v0", "custom", ())
    with pytest.raises(ValueError, match="all targets must match"):
        TargetSet(
            "s",
            "v0",
            "custom",
            (Target("a", audio, 16000, "wav"), Target("b", torch.zeros(50), 16000, "wav")),
        )


# ------------------------------------------------------------------------------ WAV sets


@pytest.fixture()
def wav_dir(tmp_path: Path) -> Path:
    d = tmp_path / "wavs"
    d.mkdir()
    write_wav(d / "b_44k.wav", np.stack([_sine(440, 44100, 1.5), _sine(660, 44100, 1.5)]), 44100)
    write_wav(d / "a_22k.wav", np.stack([_sine(330, 22050, 0.5)] * 2), 22050, bits=24)
    (d / "notes.txt").write_text("not audio")
    return d


def test_wav_targets_from_directory(wav_dir: Path) -> None:
    ts = load_wav_targets(wav_dir, 16000, 1.0)
    assert ts.names == ("a_22k.wav", "b_44k.wav")  # sorted, non-WAV skipped
    assert (ts.name, ts.split, ts.sample_rate, ts.num_samples) == ("wavs", "wav", 16000, 16000)
    assert all(t.kind == "wav" and t.unit_knobs is None for t in ts)
    short, long = ts[0].audio, ts[1].audio
    assert float(short[8000:].abs().max()) == 0.0  # 0.5 s file zero-padded
    assert float(short[:7900].abs().max()) > 0.4
    assert float(long[-100:].abs().max()) > 0.1  # 1.5 s file cut, not padded
    assert ts[1].metadata["original_duration_s"] == pytest.approx(1.5, abs=1e-3)
    assert ts[0].metadata["path"] == str(wav_dir / "a_22k.wav")
    assert float(ts.audio_batch().abs().max()) <= 1.0


def test_flac_and_ogg_files_are_targets_too(wav_dir: Path) -> None:
    sf.write(wav_dir / "c.flac", _sine(550, 16000, 1.0), 16000, format="FLAC")
    sf.write(wav_dir / "d.ogg", _sine(220, 24000, 1.0), 24000, format="OGG")
    ts = load_wav_targets(wav_dir, 16000, 1.0)
    assert ts.names == ("a_22k.wav", "b_44k.wav", "c.flac", "d.ogg")
    assert all(float(t.audio.abs().max()) > 0.3 for t in ts)


def test_wav_targets_from_list_and_single_file(wav_dir: Path) -> None:
    files = [wav_dir / "b_44k.wav", str(wav_dir / "a_22k.wav")]
    ts = load_wav_targets(files, 16000, 0.5)
    assert ts.names == ("b_44k.wav", "a_22k.wav") and ts.num_samples == 8000
    single = load_wav_targets(wav_dir / "b_44k.wav", 16000, 0.5)
    assert len(single) == 1 and single.name == "b_44k"
    torch.testing.assert_close(single[0].audio, ts[0].audio)
    normed = load_wav_targets(wav_dir / "b_44k.wav", 16000, 0.5, peak_dbfs=-6.0)
    assert float(normed[0].audio.abs().max()) == pytest.approx(10 ** (-6 / 20), rel=1e-5)


def test_wav_target_errors(tmp_path: Path, wav_dir: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"empty.*no audio files \(\.wav, \.flac"):
        load_wav_targets(empty)
    with pytest.raises(ValueError, match=r"missing\.wav.*no such"):
        load_wav_targets(tmp_path / "missing.wav")
    with pytest.raises(ValueError, match=r"missing\.wav.*no such"):
        load_wav_targets([wav_dir / "a_22k.wav", tmp_path / "missing.wav"])
    with pytest.raises(ValueError, match="empty"):
        load_wav_targets([])
    silent = write_wav(tmp_path / "silent.wav", np.zeros(1000), 16000)
    with pytest.raises(ValueError, match=r"silent\.wav.*silent"):
        load_wav_targets([wav_dir / "a_22k.wav", silent])
    late = np.r_[np.zeros(16000), _sine(440, 16000, 0.5)]
    write_wav(tmp_path / "late.wav", late, 16000)
    with pytest.raises(ValueError, match=r"late\.wav.*silent within its first 1 s"):
        load_wav_targets(tmp_path / "late.wav", 16000, 1.0)
    garbage = tmp_path / "bad.wav"
    garbage.write_bytes(b"hello world, not a wav")
    with pytest.raises(ValueError, match=r"bad\.wav: cannot read as audio"):
        load_wav_targets(garbage)


# ------------------------------------------------------------------------ resolve_targets


def test_resolve_random() -> None:
    kw = {"sample_rate": 16000, "duration_s": 0.25, "n_random": 6}
    a = resolve_targets(None, seed=7, **kw)
    b = resolve_targets("random", seed=7, **kw)
    c = resolve_targets("random", seed=8, **kw)
    assert a.split == "random" and a.kind_counts() == {"in_domain": 6}
    assert torch.equal(a.audio_batch(), b.audio_batch())
    assert not _digests(a) & _digests(c)
    assert torch.equal(
        resolve_targets(None, **kw).audio_batch(), resolve_targets(None, **kw).audio_batch()
    )


def test_resolve_named_sets_ignore_seed(test_set: TargetSet) -> None:
    ts = resolve_targets("test", sample_rate=16000, duration_s=1.0, seed=123)
    assert torch.equal(ts.audio_batch(), test_set.audio_batch())
    assert resolve_targets(test_set, sample_rate=16000, duration_s=1.0) is test_set
    with pytest.raises(ValueError, match="expected 8000 at 16000 Hz"):
        resolve_targets(test_set, sample_rate=16000, duration_s=0.5)


def test_resolve_paths(wav_dir: Path) -> None:
    kw = {"sample_rate": 16000, "duration_s": 0.5}
    assert len(resolve_targets(str(wav_dir), **kw)) == 2
    assert len(resolve_targets(wav_dir, **kw)) == 2
    assert len(resolve_targets(wav_dir / "a_22k.wav", **kw)) == 1
    listed = resolve_targets([str(wav_dir / "a_22k.wav"), wav_dir / "b_44k.wav"], **kw)
    assert listed.names == ("a_22k.wav", "b_44k.wav")


def test_resolve_errors(tmp_path: Path) -> None:
    for bad in ("tset", str(tmp_path / "nope.wav"), 3, [1, 2]):
        with pytest.raises(ValueError, match=r"unknown target.*'random'.*'train', 'test'"):
            resolve_targets(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"nope\.wav.*no such"):
        resolve_targets(tmp_path / "nope.wav")
