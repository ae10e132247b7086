"""aegym: Gymnasium environments for synthesizer control."""

__version__ = "0.1.0"
