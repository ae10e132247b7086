"""Differentiable subtractive synthesizer: knob space, atomic modules and the voice."""

from aegym.synth.filters import FilterState, ladder_filter, ladder_reference, ladder_response
from aegym.synth.knobs import DEFAULT_KNOBS, KnobSpace, KnobSpec, Patch, cutoff_limit_hz
from aegym.synth.voice import SynthConfig, Voice, VoiceState, WindowedStream, midi_to_hz

__all__ = [
    "DEFAULT_KNOBS",
    "FilterState",
    "KnobSpace",
    "KnobSpec",
    "Patch",
    "SynthConfig",
    "Voice",
    "VoiceState",
    "WindowedStream",
    "cutoff_limit_hz",
    "ladder_filter",
    "ladder_reference",
    "ladder_response",
    "midi_to_hz",
]
