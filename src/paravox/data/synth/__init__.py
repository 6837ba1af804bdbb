"""The built-in synthetic corpus (``paravox synth``), generated with espeak-ng."""

from paravox.data.synth.corpus import PRESETS, SynthConfig, generate_corpus

__all__ = ["PRESETS", "SynthConfig", "generate_corpus"]
