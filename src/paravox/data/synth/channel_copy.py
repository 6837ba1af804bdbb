"""A split of a generated corpus passed through the corpus's own test channel.

``paravox synth`` degrades only the test speakers' audio (random EQ, reverberation, coloured
noise; :func:`~paravox.data.synth.corpus.apply_channel`), so that the test trials measure
what a model does on a channel it never heard. A setting chosen on the clean dev split is
chosen for the wrong conditions: on clean trials a barely trained encoder can verify about as
well as a trained one, on degraded ones it cannot. :func:`channel_copy` makes the dev (or any)
split match the test split's conditions, with its own random draws, so that a choice made on
it is made for the conditions it will be measured in.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from paravox.audio.io import load_audio
from paravox.data.manifest import Manifest, write_manifest
from paravox.data.synth.corpus import SynthConfig, apply_channel, limit_peak, write_wav
from paravox.errors import ConfigError
from paravox.utils.config import build_config


def corpus_channel(corpus: str | Path) -> SynthConfig | None:
    """The synth config of a generated corpus whose test split went through a channel, or
    ``None`` (a prepared real corpus, or one made with ``test_channel: false``)."""
    path = Path(corpus) / "config.yaml"
    if not path.is_file():
        return None
    try:
        cfg = build_config(SynthConfig, yaml_path=path)
    except ConfigError:  # a config.yaml that is not a synth config: not a generated corpus
        return None
    return cfg if cfg.test_channel else None


def channel_copy(manifest: str | Path, out_dir: str | Path, cfg: SynthConfig,
                 seed: int = 1) -> Path:
    """Write every utterance of ``manifest`` through :func:`apply_channel` (draws keyed by
    ``(seed, utterance index)``, so a copy is reproducible and independent of the test
    split's draws) under ``out_dir/wav``, with the same rows (``labels["channel"]`` added) in
    ``out_dir/<manifest name>``. Returns the new manifest's path."""
    src, out = Manifest.load(manifest), Path(out_dir)
    rows = []
    for i, row in enumerate(src.rows):
        rng = np.random.default_rng([seed, i])
        wave, channel = apply_channel(load_audio(src.audio_path(row)), rng, cfg)
        rel = Path("wav", row.speaker or "unknown", f"{row.id}.wav")
        write_wav(out / rel, limit_peak(wave))
        rows.append(dataclasses.replace(row, path=str(rel),
                                        labels={**row.labels, "channel": channel}))
    dest = out / Path(manifest).name
    write_manifest(rows, dest)
    return dest

