"""The registered success distances follow from the stated criterion (aegym.calibration)."""

from __future__ import annotations

import pytest
import torch

from aegym.calibration import ACCEPTABLE_KNOB_ERROR, calibrate_success_distance, perturb_knobs
from aegym.envs import SUCCESS_DISTANCE
from aegym.synth import SynthConfig, Voice


def test_every_knob_has_an_acceptable_error():
    voice = Voice(SynthConfig(16_000, duration_s=0.1))
    assert set(ACCEPTABLE_KNOB_ERROR) == set(voice.knob_space.names)


def test_perturbation_moves_each_free_knob_by_exactly_its_tolerance():
    voice = Voice(SynthConfig(16_000, duration_s=0.1))
    space = voice.knob_space
    knobs = torch.tensor([[0.5] * len(space), [1.0] * len(space)])
    idx = space.indices(["pitch_midi", "cutoff_hz", "gain_db"])
    out = perturb_knobs(knobs, idx, torch.ones(2, 3), voice)
    phys, base = space.to_physical(out), space.to_physical(knobs)
    p, c, g = idx
    assert (phys[:, p] - base[:, p]).abs().tolist() == pytest.approx([0.1, 0.1], abs=1e-4)
    assert (phys[:, g] - base[:, g]).abs().tolist() == pytest.approx([1.0, 1.0], abs=1e-4)
    octaves = torch.log2(phys[:, c] / base[:, c]).abs()
    assert octaves.tolist() == pytest.approx([1 / 6, 1 / 6], abs=1e-4)
    assert (out[1, idx] < 1.0).all()  # at the top edge the error points inward
    untouched = [i for i in range(len(space)) if i not in idx]
    assert torch.equal(out[:, untouched], knobs[:, untouched])


def test_easy_threshold_is_the_calibrated_one():
    cal = calibrate_success_distance("easy", duration_s=0.5)
    assert cal.n_targets == 128 and cal.n_renders == 1024
    assert cal.threshold == pytest.approx(SUCCESS_DISTANCE["easy"], abs=0.01)
    assert cal.quantiles["q25"] < cal.threshold < cal.quantiles["q75"]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("key", "preset", "duration"),
    [("medium", "medium", 0.5), ("all", "all", 0.5), ("live_easy", "easy", 0.25)],
)
def test_other_thresholds_are_the_calibrated_ones(key, preset, duration):
    cal = calibrate_success_distance(preset, duration_s=duration)
    assert cal.threshold == pytest.approx(SUCCESS_DISTANCE[key], abs=0.01)


def test_bad_arguments_raise_naming_them():
    with pytest.raises(ValueError, match="quantile"):
        calibrate_success_distance("easy", quantile=1.0)
    with pytest.raises(ValueError, match="n_signs"):
        calibrate_success_distance("easy", n_signs=0)
    with pytest.raises(ValueError, match="free_knobs"):
        calibrate_success_distance("hard")
