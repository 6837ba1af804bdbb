"""Golden tests of the log-mel front end against librosa (an independent implementation), and
of the waveform front end against numpy."""

import librosa
import numpy as np
import pytest
import torch

from paravox.audio.features import (
    FeatureConfig,
    LogMelFilterbank,
    WaveformFrontEnd,
    build_frontend,
    mel_filterbank,
)


def test_mel_filters_match_librosa_htk():
    ours = mel_filterbank(80, 512, 16000, 20.0, 7600.0).numpy().T
    ref = librosa.filters.mel(sr=16000, n_fft=512, n_mels=80, fmin=20.0, fmax=7600.0, htk=True,
                              norm=None)
    np.testing.assert_allclose(ours, ref, atol=1e-5)


@pytest.mark.parametrize("pad_mode", ["reflect", "constant"])
def test_log_mel_matches_librosa(pad_mode):
    rng = np.random.default_rng(0)
    wave = (0.1 * rng.standard_normal(16000 + 123)).astype(np.float32)
    wave += np.sin(2 * np.pi * 300 * np.arange(wave.size) / 16000).astype(np.float32)
    cfg = FeatureConfig(mean_norm=False, pad_mode=pad_mode)
    ours, lengths = LogMelFilterbank(cfg)(torch.from_numpy(wave))
    ref = librosa.feature.melspectrogram(
        y=wave.astype(np.float64), sr=16000, n_fft=512, hop_length=160, win_length=400,
        window="hann", center=True, pad_mode=pad_mode, power=2.0, n_mels=80, fmin=20.0,
        fmax=7600.0, htk=True, norm=None)
    ref = np.log(ref.T + 1e-6)
    assert ours.shape == (1, wave.size // 160 + 1, 80)
    assert int(lengths[0]) == wave.size // 160 + 1
    np.testing.assert_allclose(ours[0].numpy(), ref, atol=2e-3, rtol=1e-4)


def test_padded_batch_equals_single_items():
    rng = np.random.default_rng(1)
    a = torch.from_numpy(rng.standard_normal(16000).astype(np.float32))
    b = torch.from_numpy(rng.standard_normal(9600).astype(np.float32))
    fb = LogMelFilterbank(FeatureConfig(mean_norm=False))
    batch = torch.zeros(2, 16000)
    batch[0], batch[1, :9600] = a, b
    feats, lens = fb(batch, torch.tensor([16000, 9600]))
    assert lens.tolist() == [101, 61]
    np.testing.assert_allclose(feats[0].numpy(), fb(a)[0][0].numpy(), atol=1e-4)
    # frames whose window lies inside the valid samples are identical
    np.testing.assert_allclose(feats[1, :58].numpy(), fb(b)[0][0, :58].numpy(), atol=1e-4)


def test_mean_normalisation_uses_valid_frames_only():
    rng = np.random.default_rng(2)
    raw = torch.from_numpy(rng.standard_normal((2, 3, 4)).astype(np.float32))
    from paravox.audio.features import mean_normalise

    out = mean_normalise(raw, torch.tensor([3, 2]))
    np.testing.assert_allclose(out[0].numpy(), (raw[0] - raw[0].mean(0)).numpy(), atol=1e-6)
    np.testing.assert_allclose(out[1, :2].numpy(), (raw[1, :2] - raw[1, :2].mean(0)).numpy(),
                               atol=1e-6)
    assert torch.all(out[1, 2] == 0)


def test_autocast_keeps_features_in_float32():
    wave = torch.randn(2, 8000)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        feats, _ = LogMelFilterbank()(wave)
    assert feats.dtype == torch.float32 and torch.isfinite(feats).all()


def test_too_short_input_is_reported():
    with pytest.raises(ValueError, match="too short"):
        LogMelFilterbank()(torch.zeros(100))


def test_waveform_front_end_matches_numpy():
    """Zero mean, unit variance over each utterance's valid samples (float64 numpy, the
    population variance as wav2vec2's feature extractor); padded samples 0."""
    rng = np.random.default_rng(1)
    lengths = [1600, 1000, 1]
    batch = np.zeros((3, 1600), dtype=np.float32)
    for i, n in enumerate(lengths):
        batch[i, :n] = 0.3 + 0.05 * rng.standard_normal(n)
    batch[1, 1000:] = 9.0  # garbage past the valid part must not count
    fe = build_frontend(FeatureConfig(kind="waveform"))
    assert isinstance(fe, WaveformFrontEnd)
    ours, out_lengths = fe(torch.from_numpy(batch), torch.tensor(lengths))
    assert ours.shape == (3, 1600, 1) and out_lengths.tolist() == lengths
    for i, n in enumerate(lengths):
        x = batch[i, :n].astype(np.float64)
        ref = np.zeros(1600)
        ref[:n] = (x - x.mean()) / np.sqrt(x.var() + 1e-7)
        np.testing.assert_allclose(ours[i, :, 0].numpy(), ref, atol=1e-5, rtol=1e-5)
    whole, whole_lengths = fe(torch.from_numpy(batch[0]))  # one wave, no lengths: all valid
    assert whole_lengths.tolist() == [1600]
    np.testing.assert_allclose(whole[0, :, 0].numpy(), ours[0, :, 0].numpy(), atol=1e-6)
