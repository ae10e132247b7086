"""The shared knob core: one set-up and one set of knob operations for every family."""

import gymnasium as gym
import numpy as np
import pytest
import torch

import aegym  # noqa: F401
from aegym.envs._core import KnobCore, NoteCore
from aegym.features import FeatureEncoder
from aegym.targets import estimate_start_knobs

FAST = {
    "AEGym/SoundMatch-Easy-v1": {"duration_s": 0.25},
    "AEGym/SoundMatchLive-v1": {},
    "AEGym/SchedulerGains-v1": {"duration_s": 0.25, "inner_steps": 4},
}

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.mark.parametrize("env_id", list(FAST))
def test_every_family_runs_on_the_knob_core_and_names_the_distance_alike(env_id):
    env = gym.make(env_id, **FAST[env_id])
    core = env.unwrapped.core
    assert isinstance(core, KnobCore)
    assert not hasattr(core, "loss")  # one name for the signal: distance
    env.reset(seed=0)
    _, _, _, _, info = env.step(env.action_space.sample())
    assert info["distance"] == pytest.approx(float(core.distance[0]))
    assert info["knobs"] == core.physical_knobs(0)
    dist, grad = core.loss_and_grad()
    assert dist.shape == (1,) and grad.shape == (1, core.n_free) and torch.isfinite(grad).all()


def test_move_knobs_clips_actions_and_the_box_and_reports_the_applied_move():
    env = gym.make("AEGym/SoundMatch-Easy-v1", duration_s=0.25, max_move=0.5)
    core = env.unwrapped.core
    core.knobs[:, core.free_idx] = torch.tensor([[0.9, 0.1, 0.5, 0.5]])
    fixed = core.knobs.clone()
    new, applied = core.move_knobs(torch.tensor([[1.0, -3.0, 0.2, 0.0]]), 0.5)
    torch.testing.assert_close(new, torch.tensor([[1.0, 0.0, 0.6, 0.5]]))
    torch.testing.assert_close(applied, torch.tensor([[0.1, -0.1, 0.1, 0.0]]))
    torch.testing.assert_close(core.free_knobs, new)
    others = torch.ones(core.knobs.shape[1], dtype=torch.bool)
    others[core.free_idx] = False
    assert torch.equal(core.knobs[:, others], fixed[:, others])  # fixed knobs untouched


def test_note_cores_fix_the_other_knobs_at_the_truth_else_at_the_estimate():
    env = gym.make("AEGym/SoundMatch-Full-v1", free_knobs="easy", target="test", duration_s=0.25)
    core = env.unwrapped.core
    assert isinstance(core, NoteCore)
    base = core.fixed_knobs_per_target()
    unknown = [t for t in core.targets if t.unit_knobs is None]
    estimate = iter(estimate_start_knobs(unknown, core.voice))
    for i, t in enumerate(core.targets):
        expected = t.unit_knobs if t.unit_knobs is not None else next(estimate)
        torch.testing.assert_close(base[i], expected)
    # Episodes start from the same rows, estimated on first use.
    idx = torch.tensor([len(core.targets) - 1])
    core.start_knobs(torch.tensor([True]), idx, core.free_knobs)
    torch.testing.assert_close(core.target_base[idx[0]], base[idx[0]])


def test_features_index_selects_items_of_every_field():
    enc = FeatureEncoder()
    feats = enc(torch.randn(4, 8000) * 0.1)
    idx = torch.tensor([2, 0])
    sub = feats.index(idx)
    for a, b in zip(sub, feats, strict=True):
        if isinstance(a, tuple):
            for x, y in zip(a, b, strict=True):
                assert torch.equal(x, y[idx])
        else:
            assert torch.equal(a, b[idx])
    assert np.allclose(feats.index(slice(1, 3)).loudness_db.numpy(), feats.loudness_db[1:3])
