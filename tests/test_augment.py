"""Augmentation golden tests: measured SNR, RT60, length and level against the requested ones."""

import numpy as np
import pytest
import torch

from conftest import tone
from paravox.data.augment import (
    AugmentConfig,
    NoiseBank,
    RirBank,
    WaveAugment,
    add_noise,
    apply_rir,
    coloured_noise,
    random_eq,
    rms,
    simulate_rir,
    speed_perturb,
)
from paravox.data.specaugment import SpecAugment, SpecAugmentConfig
from paravox.errors import ConfigError


@pytest.mark.parametrize("snr", [-5.0, 0.0, 10.0, 30.0])
def test_add_noise_hits_requested_snr(snr):
    rng = np.random.default_rng(0)
    clean = tone(seconds=2.0)
    noise = rng.standard_normal(5000).astype(np.float32)
    noisy = add_noise(clean, noise, snr, rng)
    measured = 20 * np.log10(rms(clean) / rms(noisy - clean))
    assert abs(measured - snr) < 0.01


def schroeder_rt60(rir: np.ndarray, sr: int = 16000) -> float:
    """T20 from Schroeder backward integration, extrapolated to 60 dB (independent estimate)."""
    energy = np.cumsum(rir[::-1].astype(np.float64) ** 2)[::-1]
    edc = 10 * np.log10(energy / energy[0])
    t = np.arange(rir.size) / sr
    sel = (edc <= -5) & (edc >= -25)
    slope = np.polyfit(t[sel], edc[sel], 1)[0]
    return -60.0 / slope


@pytest.mark.parametrize("rt60", [0.3, 0.6, 0.9])
def test_simulated_rir_has_requested_rt60(rt60):
    rirs = [simulate_rir(np.random.default_rng(i), rt60, drr_db=0.0) for i in range(8)]
    measured = np.median([schroeder_rt60(r) for r in rirs])
    assert measured == pytest.approx(rt60, rel=0.25)


def test_reverb_keeps_length_alignment_and_level():
    wave = tone(seconds=1.0)
    rir = np.zeros(400, np.float32)
    rir[0] = 1.0  # a pure direct path is the identity
    np.testing.assert_allclose(apply_rir(wave, rir), wave, atol=1e-5)
    rir = simulate_rir(np.random.default_rng(0), 0.5, 3.0)
    out = apply_rir(wave, rir)
    assert out.shape == wave.shape and rms(out) == pytest.approx(rms(wave), rel=1e-3)


def test_speed_perturbation_scales_length_and_pitch():
    wave = tone(500, seconds=1.0)
    fast = speed_perturb(wave, 1.1)
    assert abs(fast.size - 16000 / 1.1) <= 2
    f = np.argmax(np.abs(np.fft.rfft(fast))) * 16000 / fast.size
    assert f == pytest.approx(550, abs=3)


def test_random_eq_keeps_level():
    wave = np.random.default_rng(0).standard_normal(16000).astype(np.float32)
    out = random_eq(wave, np.random.default_rng(1))
    assert rms(out) == pytest.approx(rms(wave), rel=1e-3)
    assert not np.allclose(out, wave)


@pytest.mark.parametrize("kind, slope", [("white", 0.0), ("pink", -1.0), ("brown", -2.0)])
def test_coloured_noise_spectral_slope(kind, slope):
    x = coloured_noise(kind, 2**16, np.random.default_rng(0))
    p = np.abs(np.fft.rfft(x)) ** 2
    f = np.arange(p.size)
    sel = (f > 50) & (f < p.size - 1)
    fitted = np.polyfit(np.log(f[sel]), np.log(p[sel]), 1)[0]
    assert fitted == pytest.approx(slope, abs=0.1)
    assert rms(x) == pytest.approx(1.0, rel=1e-4)


def test_augment_is_seeded_and_switchable():
    cfg = AugmentConfig(noise_prob=1.0, reverb_prob=1.0, speed_prob=1.0, gain_prob=1.0,
                        n_simulated_rirs=4)
    aug = WaveAugment(cfg)
    wave = tone(seconds=0.5)
    a = aug.crop(aug.utterance(wave, np.random.default_rng(5)), np.random.default_rng(6))
    b = aug.crop(aug.utterance(wave, np.random.default_rng(5)), np.random.default_rng(6))
    np.testing.assert_array_equal(a, b)
    off = WaveAugment(AugmentConfig(noise_prob=0, reverb_prob=0, speed_prob=0, gain_prob=0))
    assert off.noises is None and off.rirs is None
    np.testing.assert_array_equal(off.crop(off.utterance(wave, np.random.default_rng(0)),
                                           np.random.default_rng(0)), wave)


def test_noise_bank_uses_folders_and_babble(tmp_path, write_wav):
    write_wav("noises/hum.wav", tone(50, 2.0))
    sources = [write_wav(f"speech/{i}.wav", tone(200 + 50 * i, 1.0)) for i in range(4)]
    bank = NoiseBank.build(AugmentConfig(noise_dirs=[str(tmp_path / "noises")], n_babble=2),
                           babble_sources=sources)
    assert bank.names[0].endswith("hum.wav")
    assert sum(n.startswith("babble") for n in bank.names) == 2
    with pytest.raises(ConfigError, match="augmentation folder not found: /nowhere"):
        NoiseBank.build(AugmentConfig(noise_dirs=["/nowhere"]))


def test_a_bank_is_built_once_per_process_and_again_when_a_source_changes(tmp_path, write_wav):
    """Staged fine-tuning and studies build the same banks many times: the second build is the
    first bank (content identical to a fresh build, arrays read-only); a changed noise file
    or other settings build a new one."""
    write_wav("noises/hum.wav", tone(50, 2.0))
    sources = [write_wav(f"speech/{i}.wav", tone(200 + 50 * i, 1.0)) for i in range(4)]
    cfg = AugmentConfig(noise_dirs=[str(tmp_path / "noises")], n_babble=2, seed=7)
    first = NoiseBank.build(cfg, babble_sources=sources)
    assert NoiseBank.build(cfg, babble_sources=sources) is first
    fresh = NoiseBank._build(cfg, [tmp_path / "noises" / "hum.wav"], sources, 8.0)
    assert first.names == fresh.names
    for a, b in zip(first.clips, fresh.clips):
        np.testing.assert_array_equal(a, b)
    assert not first.clips[0].flags.writeable
    assert NoiseBank.build(AugmentConfig(**{**cfg.__dict__, "seed": 8}),
                           babble_sources=sources) is not first
    write_wav("noises/hum.wav", tone(60, 3.0))  # the file changes: its bank is rebuilt
    changed = NoiseBank.build(cfg, babble_sources=sources)
    assert changed is not first and changed.clips[0].size == 3 * 16000

    rir_cfg = AugmentConfig(n_simulated_rirs=3, seed=5)
    rirs = RirBank.build(rir_cfg)
    assert RirBank.build(rir_cfg) is rirs and len(rirs.rirs) == 3
    for a, b in zip(rirs.rirs, RirBank._simulate(rir_cfg).rirs):
        np.testing.assert_array_equal(a, b)
    assert RirBank.build(AugmentConfig(n_simulated_rirs=3, seed=6)) is not rirs


def test_unreadable_babble_is_named_on_every_build(tmp_path, write_wav, caplog):
    sources = [write_wav(f"speech/{i}.wav", tone(200 + 50 * i, 1.0)) for i in range(4)]
    bad = tmp_path / "speech" / "broken.wav"
    bad.write_bytes(b"not audio")
    cfg = AugmentConfig(n_babble=4, babble_speakers=(5, 5), seed=3)
    for _ in range(2):  # the second build comes from the cache and still says so
        caplog.clear()
        NoiseBank.build(cfg, babble_sources=[*sources, bad])
        assert "1 unreadable corpus file(s) left out" in caplog.text
        assert "broken.wav" in caplog.text


def test_specaugment_masks_in_training_only():
    feats = torch.ones(3, 100, 80)
    sa = SpecAugment(SpecAugmentConfig(time_masks=2, max_time_width=10, freq_masks=2,
                                       max_freq_width=8))
    out = sa(feats, generator=torch.Generator().manual_seed(0))
    masked = (out == 0)
    assert masked.any()
    # masks are whole rows (time) or whole columns (frequency)
    time_rows = masked.all(2)
    freq_cols = masked.all(1)
    assert torch.equal(masked, time_rows[:, :, None] | freq_cols[:, None, :])
    assert time_rows.sum(1).max() <= 20 and freq_cols.sum(1).max() <= 16
    sa.eval()
    assert torch.equal(sa(feats), feats)


def test_band_limit_keeps_the_band_and_removes_the_rest():
    from paravox.data.augment import band_limit

    t = np.arange(16000) / 16000

    def level(hz, lo, hi):
        x = np.sin(2 * np.pi * hz * t).astype(np.float32)
        return float(np.sqrt(np.mean(band_limit(x, lo, hi) ** 2)) / np.sqrt(0.5))

    assert level(1000, 300, 3400) == pytest.approx(1.0, abs=1e-3)
    assert level(6000, 300, 3400) < 1e-3 and level(100, 300, 3400) < 1e-3
    # a raised-cosine edge a quarter octave wide: half amplitude at the nominal edge
    assert level(3400, 300, 3400) == pytest.approx(0.5, abs=0.02)


def test_channel_augmentation_is_drawn_only_when_on_and_checked():
    from paravox.data.augment import AugmentConfig, WaveAugment
    from paravox.errors import ConfigError

    wave = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    base = dict(noise_prob=0.0, reverb_prob=0.0, gain_prob=0.0)
    on = WaveAugment(AugmentConfig(**base, band_prob=1.0, band_low_hz=(300.0, 300.0),
                                   band_high_hz=(3000.0, 3000.0)))
    y = on.crop(wave, np.random.default_rng(1))
    spec = np.abs(np.fft.rfft(y))
    f = np.fft.rfftfreq(y.size, 1 / 16000)
    assert spec[f > 4000].max() < 1e-3 * spec[(f > 500) & (f < 2500)].mean()
    off = WaveAugment(AugmentConfig(**base))
    np.testing.assert_array_equal(off.crop(wave, np.random.default_rng(1)), wave)
    with pytest.raises(ConfigError, match="augment.band_prob"):
        AugmentConfig(band_prob=1.5)
    with pytest.raises(ConfigError, match="band_low_hz"):
        AugmentConfig(band_low_hz=(500.0, 4000.0), band_high_hz=(3000.0, 7000.0))
