"""Audio layer: reading/resampling to 16 kHz mono float, and log-mel features."""

from paravox.audio.io import TARGET_SR, AudioInfo, audio_info, load_audio, resample, to_mono

__all__ = ["TARGET_SR", "AudioInfo", "audio_info", "load_audio", "resample", "to_mono"]
