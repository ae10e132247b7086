import pytest
import torch

from aegym.synth.envelopes import adsr


def test_segments_hit_their_levels_at_their_times():
    t = torch.linspace(0, 2, 20001)
    a, d, s, r, off = 0.1, 0.2, 0.5, 0.4, 1.0
    env = adsr(t, *(torch.tensor([v]) for v in (a, d, s, r)), note_off_s=off)[0]

    def at(sec):
        return float(env[round(sec * 10000)])

    assert at(0.0) == pytest.approx(0.0)
    assert at(0.05) == pytest.approx(0.5, abs=1e-3)
    assert at(0.1) == pytest.approx(1.0, abs=1e-3)
    assert at(0.2) == pytest.approx(0.75, abs=1e-3)
    assert at(0.3) == pytest.approx(0.5, abs=1e-3)
    assert at(0.9) == pytest.approx(0.5, abs=1e-3)
    assert at(1.2) == pytest.approx(0.25, abs=1e-3)
    assert at(1.4) == pytest.approx(0.0, abs=1e-3)
    assert float(env.min()) >= 0 and float(env.max()) <= 1


def test_release_during_attack_starts_from_current_level():
    t = torch.linspace(0, 1, 1001)
    env = adsr(
        t, torch.tensor([0.5]), torch.tensor([0.1]), torch.tensor([0.5]), torch.tensor([0.1]), 0.25
    )[0]
    assert float(env[250]) == pytest.approx(0.5, abs=1e-2)
    assert float(env[300]) == pytest.approx(0.25, abs=2e-2)


def test_gradients_wrt_all_four_parameters():
    t = torch.linspace(0, 1.5, 3000)
    params = [torch.tensor([v], requires_grad=True) for v in (0.1, 0.3, 0.6, 0.3)]
    env = adsr(t, *params, note_off_s=1.0)
    env.sum().backward()
    for p in params:
        assert torch.isfinite(p.grad).all() and float(p.grad.abs()) > 0
