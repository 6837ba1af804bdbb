"""Shared fixtures: the tiny synthetic corpus is generated once per test session."""

from __future__ import annotations

import os

import numpy as np
import pytest
import soundfile as sf
import torch

from paravox.data.synth import PRESETS, SynthConfig, generate_corpus
from paravox.utils.config import build_config


def pytest_configure(config):
    """Under pytest-xdist (``make test`` runs ``-n auto``) each worker process gets its share
    of the cores for torch's intra-op threads, so N workers do not run N x cores threads."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "0") or 0)
    if workers > 1:
        threads = max(1, torch.get_num_threads() // workers)
        torch.set_num_threads(threads)
        os.environ["OMP_NUM_THREADS"] = str(threads)  # for the subprocesses tests start


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory):
    """The `tiny` preset, generated with one worker."""
    out = tmp_path_factory.mktemp("tiny_corpus")
    cfg = build_config(SynthConfig, base=PRESETS["tiny"], overrides=["workers=1"])
    summary = generate_corpus(cfg, out, progress=False, overwrite=True)
    return out, summary


@pytest.fixture
def write_wav(tmp_path):
    def _write(name: str, wave: np.ndarray, sr: int = 16000, subtype: str | None = None):
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        sf.write(str(path), wave, sr, subtype=subtype)
        return path

    return _write


def tone(freq: float = 440.0, seconds: float = 1.0, sr: int = 16000, amp: float = 0.3
         ) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    return (amp * np.sin(2 * np.pi * freq * t)).astype(np.float32)
