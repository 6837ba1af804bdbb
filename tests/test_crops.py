import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from paravox.data.crops import CropConfig, TooShortError, fit_length, multi_crop, random_crop
from paravox.errors import ConfigError


def test_multi_crop_groups_by_length():
    cfg = CropConfig(n_long=2, long_seconds=0.5, n_short=4, short_seconds=0.25)
    wave = np.arange(16000, dtype=np.float32)
    groups = multi_crop(wave, cfg, np.random.default_rng(0))
    assert [g.shape for g in groups] == [(2, 8000), (4, 4000)]


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 3000), length=st.integers(1, 2000), seed=st.integers(0, 2**16),
       policy=st.sampled_from(["repeat", "pad"]))
def test_crop_is_a_contiguous_window_of_the_fitted_wave(n, length, seed, policy):
    wave = np.arange(1, n + 1, dtype=np.float32)
    crop = random_crop(wave, length, np.random.default_rng(seed), policy)
    assert crop.size == length
    fitted = fit_length(wave, length, policy)
    assert fitted.size == max(n, length)
    windows = np.lib.stride_tricks.sliding_window_view(fitted, length)
    assert (windows == crop).all(axis=1).any()


def test_short_policies():
    wave = np.array([1, 2, 3], np.float32)
    np.testing.assert_array_equal(fit_length(wave, 7, "repeat"), [1, 2, 3, 1, 2, 3, 1])
    np.testing.assert_array_equal(fit_length(wave, 5, "pad"), [1, 2, 3, 0, 0])
    with pytest.raises(TooShortError):
        fit_length(wave, 5, "drop")
    with pytest.raises(ConfigError, match="short_policy='cut'"):
        CropConfig(short_policy="cut")
