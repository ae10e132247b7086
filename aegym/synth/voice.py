"""The voice: the one place where oscillators, shaper, filter and envelopes are wired.

Patch diagram (every arrow batched over voices, differentiable in every knob)::

    osc1 (morph, pitch) ─┐
    osc2 (morph, pitch·detune) ─┼─ mix ─ + noise ─ waveshaper ─ ladder VCF ─ VCA ─ gain ─> out
                                                  cutoff·2^(amount·filter ADSR) ┘   amp ADSR ┘

Knobs arrive normalized (``[B, K]`` in [0, 1], clamped straight-through: a knob on a
bound keeps its gradient) and are mapped to physical values by the voice's
:class:`~aegym.synth.knobs.KnobSpace`, by default
:meth:`~aegym.synth.knobs.KnobSpace.for_sample_rate` (cutoff knob capped at
``min(8000, 0.43·fs)`` Hz, so every part of its range acts on the sound). Filter
cutoff and envelopes run at control rate (one value per ``control_block`` samples);
oscillators, shaper and VCA at audio rate. :meth:`Voice.render` carries a
:class:`VoiceState` so consecutive calls continue the same note without clicks
(oscillator phase, filter state, envelope time, noise position): the streaming form
behind the windowed loop.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import nn

from aegym._checks import check_int, check_positive, check_tensor
from aegym.synth.envelopes import adsr
from aegym.synth.filters import FilterState, _ladder_filter_blocks
from aegym.synth.knobs import KnobSpace, Patch
from aegym.synth.oscillators import (
    _wavetable_bank_blocks,
    build_tables,
    morph_weights,
    noise_table,
    read_noise,
)
from aegym.synth.shaper import noisy_drive

NOISE_TABLE_SIZE = 1 << 16
# The amp envelope is evaluated every AMP_ENV_STEP samples and interpolated linearly in
# between: exact on its linear segments, corners rounded over < 1 ms at 16 kHz.
AMP_ENV_STEP = 16


@dataclass(frozen=True)
class SynthConfig:
    """Settings shared by every module of a voice.

    :param sample_rate: audio sample rate in Hz (>= 4000).
    :param duration_s: length of a one-shot render (``Voice.forward``) in seconds.
    :param note_off_s: note-off time of a one-shot render; ``None`` = 75 % of the
        duration. Streaming renders hold the note (no release).
    :param control_block: samples per control-rate step of the filter cutoff and its
        envelope (a multiple of 16; the amp envelope runs every 16 samples).
    :param noise_seed: seed of the frozen noise table (renders are deterministic).
    """

    sample_rate: int = 16_000
    duration_s: float = 1.0
    note_off_s: float | None = None
    control_block: int = 128
    noise_seed: int = 0

    def __post_init__(self) -> None:
        check_int("sample_rate", self.sample_rate, 4000)
        check_positive("duration_s", self.duration_s)
        if self.note_off_s is not None:
            check_positive("note_off_s", self.note_off_s)
        check_int("control_block", self.control_block, AMP_ENV_STEP)
        if self.control_block % AMP_ENV_STEP:
            raise ValueError(
                f"control_block must be a multiple of {AMP_ENV_STEP}, got {self.control_block}"
            )
        check_int("noise_seed", self.noise_seed, 0)
        if self.n_samples < self.control_block:
            raise ValueError(
                f"duration_s={self.duration_s} gives {self.n_samples} samples, fewer than "
                f"one control block ({self.control_block})"
            )

    @property
    def n_samples(self) -> int:
        """Samples in a one-shot render."""
        return round(self.duration_s * self.sample_rate)

    @property
    def note_off(self) -> float:
        """Note-off time in seconds of a one-shot render."""
        return 0.75 * self.duration_s if self.note_off_s is None else self.note_off_s


class VoiceState(NamedTuple):
    """Everything a render needs to continue a note: ``[B]`` phases, the noise read
    position, the filter state and the time since note-on.

    ``noise_pos`` and ``time_s`` are shared by the batch (an int and a float), or per
    voice (``[B]`` tensors: long and float64), so that voices of one batch can start
    their notes at different times (a batched env resetting some episodes).
    """

    phase1: torch.Tensor
    phase2: torch.Tensor
    noise_pos: int | torch.Tensor
    filter: FilterState
    time_s: float | torch.Tensor

    @classmethod
    def initial(cls, batch: int, device=None, dtype=torch.float32) -> VoiceState:
        z = torch.zeros(batch, device=device, dtype=dtype)
        return cls(
            z,
            z.clone(),
            0,
            FilterState.zeros(batch, device, dtype),
            0.0,
        )

    def detach(self) -> VoiceState:
        """Cut the autograd history (truncated backpropagation between windows)."""
        return VoiceState(
            self.phase1.detach(),
            self.phase2.detach(),
            self.noise_pos,
            self.filter.detach(),
            self.time_s,
        )


def midi_to_hz(pitch_midi: torch.Tensor) -> torch.Tensor:
    """``440 · 2^((m - 69)/12)``."""
    return 440.0 * torch.pow(2.0, (pitch_midi - 69.0) / 12.0)


class Voice(nn.Module):
    """A batched, differentiable subtractive synth voice.

    Shape: ``forward(unit_knobs [B, K]) -> audio [B, T]`` with ``T = config.n_samples``.

    ``knob_space=None`` uses ``KnobSpace.for_sample_rate(config.sample_rate)``; a space
    given explicitly is used as is.
    """

    def __init__(self, config: SynthConfig | None = None, knob_space: KnobSpace | None = None):
        super().__init__()
        self.config = config or SynthConfig()
        self.knob_space = knob_space or KnobSpace.for_sample_rate(self.config.sample_rate)
        self.register_buffer(
            "noise", noise_table(NOISE_TABLE_SIZE, self.config.noise_seed), persistent=False
        )
        self._idx = {name: self.knob_space.index(name) for name in self.knob_space.names}

    @property
    def n_knobs(self) -> int:
        return len(self.knob_space)

    def forward(self, unit_knobs: torch.Tensor) -> torch.Tensor:
        """One-shot note: note-on at 0, note-off at ``config.note_off``."""
        audio, _ = self.render(unit_knobs, self.config.n_samples, note_off_s=self.config.note_off)
        return audio

    def render_patch(self, patch: Patch) -> torch.Tensor:
        """Render one patch; returns ``[T]`` audio."""
        return self(patch.to_unit(self.knob_space)[None].to(self.noise.device))[0]

    def initial_state(self, batch: int) -> VoiceState:
        return VoiceState.initial(batch, self.noise.device)

    def render(
        self,
        unit_knobs: torch.Tensor,
        n_samples: int,
        state: VoiceState | None = None,
        note_off_s: float | None = None,
    ) -> tuple[torch.Tensor, VoiceState]:
        """Render ``n_samples`` continuing from ``state`` (``None`` = note-on now).

        Knobs are held for the whole call. ``note_off_s=None`` holds the note.
        Returns ``(audio [B, n_samples], new state)``.
        """
        check_tensor("unit_knobs", unit_knobs, ndim=2, last_dim=self.n_knobs)
        check_int("n_samples", n_samples, 1)
        cfg = self.config
        bsz = unit_knobs.shape[0]
        state = state or self.initial_state(bsz)
        if state.phase1.shape[0] != bsz:
            raise ValueError(f"state batch {state.phase1.shape[0]} != knob batch {bsz}")
        sr = float(cfg.sample_rate)
        block = cfg.control_block
        n_pad = -(-n_samples // block) * block
        knob = self.knob_space.to_physical(unit_knobs)

        def k(name: str) -> torch.Tensor:
            return knob[:, self._idx[name]]

        # Oscillators, mixed by scaling their one-period tables.
        f1 = midi_to_hz(k("pitch_midi"))
        f2 = f1 * torch.pow(2.0, k("osc2_detune_cents") / 1200.0)
        width = k("pulse_width")
        mix = k("osc_mix")
        # Both oscillators' tables in one batched build, [B, 2, L + 1].
        tables = build_tables(
            torch.cat([f1, f2]),
            morph_weights(torch.cat([k("osc1_shape"), k("osc2_shape")])),
            torch.cat([width, width]),
            sr,
        )
        tables = (
            tables.view(2, bsz, -1).transpose(0, 1) * torch.stack([1.0 - mix, mix], 1)[..., None]
        )
        # Audio runs as [B, K, N] control blocks stored time-major ([N, B, K] in memory):
        # the layout of the block-parallel filter, so no transposes until the VCA.
        nblk = n_pad // block
        x, ends = _wavetable_bank_blocks(
            tables,
            torch.stack([f1, f2], 1),
            n_pad,
            sr,
            torch.stack([state.phase1, state.phase2], 1),
            block,
        )
        end1, end2 = ends.unbind(1)
        if isinstance(state.noise_pos, torch.Tensor):  # per-voice read positions [B]
            pos = state.noise_pos[:, None] + torch.arange(n_pad, device=x.device)
            noise = self.noise[pos % self.noise.numel()].view(bsz, nblk, block)
        else:
            noise = read_noise(self.noise, state.noise_pos, n_pad).view(1, nblk, block)
        # Stored time-major like x, so the noise mix and shaper run over contiguous
        # memory (a strided read of the noise made them several times slower).
        noise = noise.permute(2, 0, 1).contiguous().permute(1, 2, 0)
        # Noise and shaper, soft_clip(x + noise) = tanh(g (x + noise)) / tanh(g): the
        # division goes into the filter's input gain.
        drive = torch.pow(10.0, k("drive_db") / 20.0)
        level = k("noise_level")[:, None, None]
        x = noisy_drive(x, noise, level, drive[:, None, None], overwrite=True)
        # Filter with its envelope at control rate.
        t0 = state.time_s
        if isinstance(t0, torch.Tensor):  # per-voice note times [B]: envelopes [B, T]
            t0 = t0.to(x.dtype)[:, None]
        off = math.inf if note_off_s is None else note_off_s
        ctrl_t = t0 + torch.arange(n_pad // block, device=x.device, dtype=x.dtype) * (block / sr)
        fenv = adsr(
            ctrl_t,
            k("filter_attack_s"),
            k("filter_decay_s"),
            k("filter_sustain"),
            k("filter_release_s"),
            off,
        )
        cutoff = k("cutoff_hz")[:, None] * torch.pow(2.0, k("filter_env_octaves")[:, None] * fenv)
        res = k("resonance")[:, None].expand_as(cutoff)
        xt = x.permute(2, 0, 1).reshape(block, bsz * nblk)  # a view: already time-major
        y, fstate = _ladder_filter_blocks(
            xt, cutoff, res, sr, state.filter, input_gain=1.0 / torch.tanh(drive)
        )
        # VCA with the output gain folded into its envelope.
        step = AMP_ENV_STEP
        amp_t = t0 + torch.arange(n_pad // step + 1, device=x.device, dtype=x.dtype) * (step / sr)
        amp = (
            adsr(
                amp_t,
                k("amp_attack_s"),
                k("amp_decay_s"),
                k("amp_sustain"),
                k("amp_release_s"),
                off,
            )
            * torch.pow(10.0, k("gain_db") / 20.0)[:, None]
        )
        amp = torch.nn.functional.interpolate(
            amp[:, None], size=n_pad + 1, mode="linear", align_corners=True
        )[:, 0, :n_pad]
        # amp first: the product takes its [B, T] layout, the one transpose of the voice.
        out = (amp.view(bsz, nblk, block) * y.view(block, bsz, nblk).permute(1, 2, 0)).view(
            bsz, n_pad
        )
        if n_pad != n_samples:  # trailing samples of the last block are dropped
            out = out[:, :n_samples]
        new_state = VoiceState(
            end1,
            end2,
            (state.noise_pos + n_pad) % self.noise.numel(),
            fstate,
            state.time_s + n_pad / sr,
        )
        return out, new_state


class WindowedStream:
    """Overlapping analysis windows over one continuous note (the seed's §7 loop).

    Each :meth:`step` renders ``hop`` new samples with the given knobs, continuing
    phase and filter state, and returns the latest ``window`` samples ``[B, window]``
    (the first call left-pads with silence). Gradients flow into the new hop only;
    the carried state is detached (truncated backpropagation).
    """

    def __init__(self, voice: Voice, batch: int, window_s: float, hop_s: float) -> None:
        sr = voice.config.sample_rate
        block = voice.config.control_block
        check_positive("window_s", window_s)
        check_positive("hop_s", hop_s)
        self.voice = voice
        self.hop = max(block, round(hop_s * sr / block) * block)
        self.window = max(self.hop, round(window_s * sr))
        self.batch = check_int("batch", batch, 1)
        self.reset()

    def reset(self) -> None:
        self.state = self.voice.initial_state(self.batch)
        self.buffer = torch.zeros(self.batch, self.window, device=self.voice.noise.device)

    def step(self, unit_knobs: torch.Tensor) -> torch.Tensor:
        new, state = self.voice.render(unit_knobs, self.hop, self.state)
        self.state = state.detach()
        window = torch.cat([self.buffer[:, self.hop :], new], -1)
        self.buffer = window.detach()
        return window
