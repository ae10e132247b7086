import json
import math

import pytest
import torch

from aegym.synth import DEFAULT_KNOBS, KnobSpace, KnobSpec, Patch
from aegym.synth._grad import straight_through_clamp


def test_round_trip_unit_physical():
    space = KnobSpace()
    u = torch.rand(16, len(space))
    back = space.to_unit(space.to_physical(u))
    assert torch.allclose(back, u, atol=1e-5)


def test_log_and_linear_mapping_values():
    cutoff = KnobSpec("cutoff_hz", "Hz", 40.0, 8000.0, "log", 2000.0, "")
    assert math.isclose(
        float(cutoff.to_physical(torch.tensor(0.5))), math.sqrt(40 * 8000), rel_tol=1e-5
    )
    gain = KnobSpec("gain_db", "dB", -24.0, 0.0, "linear", -6.0, "")
    assert float(gain.to_physical(torch.tensor(0.25))) == pytest.approx(-18.0)


def test_out_of_range_unit_values_are_clamped():
    space = KnobSpace()
    phys_hi = space.to_physical(torch.full((1, len(space)), 1.7))
    phys_lo = space.to_physical(torch.full((1, len(space)), -3.0))
    for i, k in enumerate(space):
        assert float(phys_hi[0, i]) == pytest.approx(k.maximum, rel=1e-5)
        assert float(phys_lo[0, i]) == pytest.approx(k.minimum, rel=1e-5)


def test_defaults_and_names():
    space = KnobSpace()
    assert space.names[0] == "pitch_midi" and len(space) == len(DEFAULT_KNOBS)
    phys = space.to_physical(space.default_unit())
    for i, k in enumerate(space):
        assert float(phys[i]) == pytest.approx(k.default, rel=1e-4, abs=1e-5)


def test_patch_json_round_trip(tmp_path):
    space = KnobSpace()
    u = torch.rand(len(space))
    patch = Patch.from_unit(u, space)
    again = Patch.from_json(patch.to_json(), space)
    assert torch.allclose(again.to_unit(space), u, atol=1e-5)
    path = tmp_path / "p.json"
    patch.save(path)
    assert Patch.load(path, space) == patch
    assert json.loads(path.read_text())["cutoff_hz"] == pytest.approx(patch["cutoff_hz"])


def test_partial_patch_uses_defaults():
    space = KnobSpace()
    u = Patch({"cutoff_hz": 500.0}).to_unit(space)
    phys = space.to_physical(u)
    assert float(phys[space.index("cutoff_hz")]) == pytest.approx(500.0, rel=1e-4)
    assert float(phys[space.index("gain_db")]) == pytest.approx(-6.0, rel=1e-4)


@pytest.mark.parametrize(
    "values, err",
    [
        ({"cutof_hz": 100.0}, "unknown knob 'cutof_hz'"),
        ({"cutoff_hz": 1e6}, "cutoff_hz must be in"),
        ({"cutoff_hz": float("nan")}, "cutoff_hz must be in"),
    ],
)
def test_bad_patches(values, err):
    with pytest.raises(ValueError, match=err):
        Patch(values).validate(KnobSpace())


def test_bad_json_and_specs():
    with pytest.raises(ValueError, match="not valid JSON"):
        Patch.from_json("{nope")
    with pytest.raises(ValueError, match="object"):
        Patch.from_json("[1, 2]")
    with pytest.raises(ValueError, match="log scale needs minimum > 0"):
        KnobSpec("x", "Hz", 0.0, 1.0, "log", 0.5, "")
    with pytest.raises(ValueError, match="minimum"):
        KnobSpec("x", "Hz", 2.0, 1.0, "linear", 1.5, "")
    with pytest.raises(ValueError, match="duplicate"):
        KnobSpace([DEFAULT_KNOBS[0], DEFAULT_KNOBS[0]])


def test_tensor_checks():
    space = KnobSpace()
    with pytest.raises(ValueError, match="last dim"):
        space.to_physical(torch.zeros(2, 3))
    with pytest.raises(ValueError, match="NaN"):
        space.to_physical(torch.full((1, len(space)), float("nan")))
    with pytest.raises(TypeError, match="floating"):
        space.to_physical(torch.zeros(1, len(space), dtype=torch.long))


# ----------------------------------------------------------------- gradients on the bounds


def test_straight_through_clamp_matches_clamp_forward_with_unit_gradient():
    x = torch.tensor([-1e10, -3.0, -1e-7, 0.0, 1e-7, 0.25, 1.0 - 1e-7, 1.0, 1.0 + 1e-7, 7.0])
    x.requires_grad_(True)
    y = straight_through_clamp(x)
    assert torch.equal(y.detach(), x.detach().clamp(0.0, 1.0))  # bit-identical forward
    (g,) = torch.autograd.grad((y * torch.arange(1.0, 11.0)).sum(), x)
    assert torch.equal(g, torch.arange(1.0, 11.0))  # identity backward, bounds included
    lo = straight_through_clamp(x, 0.5, None)
    assert torch.equal(lo.detach(), x.detach().clamp_min(0.5))
    inf = torch.tensor([float("inf"), float("-inf")], requires_grad=True)
    out = straight_through_clamp(inf)
    assert out.tolist() == [1.0, 0.0]
    (g_inf,) = torch.autograd.grad(out.sum(), inf)
    assert g_inf.tolist() == [0.0, 0.0]


def test_knob_mapping_has_gradient_on_and_beyond_the_bounds():
    space = KnobSpace()
    for value in (-0.5, 0.0, 1.0, 1.5):
        u = torch.full((1, len(space)), value, requires_grad=True)
        phys = space.to_physical(u)
        (g,) = torch.autograd.grad(phys.sum(), u)
        assert bool((g > 0).all()), f"zero gradient at unit value {value}: {g}"
        edge = space.to_physical(torch.full((1, len(space)), min(max(value, 0.0), 1.0)))
        assert torch.equal(phys.detach(), edge)  # values still clamped


def test_voice_knob_space_caps_cutoff_by_sample_rate():
    from aegym.synth import SynthConfig, Voice, cutoff_limit_hz

    expected = {4000: 1720.0, 8000: 3440.0, 16000: 6880.0, 22050: 8000.0, 48000: 8000.0}
    for sr, top in expected.items():
        assert cutoff_limit_hz(sr) == pytest.approx(top)
        for space in (
            KnobSpace.for_sample_rate(sr),
            Voice(SynthConfig(sample_rate=sr, duration_s=0.05)).knob_space,
        ):
            assert space.names == KnobSpace().names
            cutoff = space[space.index("cutoff_hz")]
            assert cutoff.maximum == pytest.approx(top) and cutoff.minimum == 40.0
            assert cutoff.maximum < 0.45 * sr  # below the discretisation limit
            assert cutoff.default == min(2000.0, top)
            phys = space.to_physical(torch.ones(1, len(space)))[0, space.index("cutoff_hz")]
            assert float(phys) == pytest.approx(top, rel=1e-5)
            for k, full in zip(space, KnobSpace(), strict=True):  # the others untouched
                if k.name != "cutoff_hz":
                    assert k == full
    assert KnobSpace()[KnobSpace().index("cutoff_hz")].maximum == 8000.0  # names/indices
