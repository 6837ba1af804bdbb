import numpy as np
import pytest

from conftest import tone
from paravox.audio.io import load_audio
from paravox.errors import AudioError


@pytest.mark.parametrize("sr", [8000, 22050, 44100, 48000])
def test_any_rate_and_channels_become_16k_mono(write_wav, sr):
    left, right = tone(440, 1.0, sr, amp=0.4), tone(440, 1.0, sr, amp=0.2)
    stereo = np.stack([left, right], axis=1)
    wave = load_audio(write_wav(f"s{sr}.wav", stereo, sr))
    assert wave.dtype == np.float32 and wave.ndim == 1
    assert abs(wave.size - 16000) <= 1
    spectrum = np.abs(np.fft.rfft(wave))
    assert abs(np.argmax(spectrum) * 16000 / wave.size - 440) < 2  # pitch survives resampling
    peak = np.abs(wave[1000:-1000]).max()
    assert peak == pytest.approx(0.3, abs=0.01)  # the channels are averaged


def test_segment_reading(write_wav):
    sr = 16000
    wave = np.concatenate([np.zeros(sr), np.ones(sr) * 0.5]).astype(np.float32)
    seg = load_audio(write_wav("a.wav", wave), offset=1.0, duration=0.5)
    assert seg.size == 8000 and np.allclose(seg, 0.5, atol=1e-3)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(AudioError, match="nope.wav: file not found"):
        load_audio(tmp_path / "nope.wav")


def test_corrupt_file_is_named(tmp_path):
    bad = tmp_path / "corrupt.wav"
    bad.write_bytes(b"RIFF\x00\x00\x00\x00WAVEjunkjunkjunk")
    with pytest.raises(AudioError, match="corrupt.wav: unreadable or corrupt"):
        load_audio(bad)


def test_empty_file_is_named(write_wav):
    path = write_wav("empty.wav", np.zeros(0, np.float32))
    with pytest.raises(AudioError, match="empty.wav: file holds no samples"):
        load_audio(path)


def test_nan_audio_is_named(write_wav):
    wave = tone()
    wave[100] = np.nan
    path = write_wav("nan.wav", wave, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav: audio contains NaN"):
        load_audio(path)


def test_segment_beyond_end_is_named(write_wav):
    path = write_wav("short.wav", tone(seconds=1.0))
    with pytest.raises(AudioError, match="short.wav: segment 2.000s"):
        load_audio(path, offset=2.0, duration=1.0)


def test_streaming_placeholder_length_is_not_truncation(write_wav):
    """SoX on a pipe writes 0x7FFFF000 as the data length: the file is whole, not cut."""
    import struct

    from paravox.audio.io import load_audio, wav_header

    path = write_wav("piped.wav", tone(), subtype="PCM_16")
    data = bytearray(path.read_bytes())
    pos = data.find(b"data")
    data[pos + 4:pos + 8] = struct.pack("<I", 0x7FFFF000)
    path.write_bytes(bytes(data))
    assert wav_header(path) is None
    assert len(load_audio(path)) == 16000
    # a real cut is refused, naming the truncation
    cut = write_wav("cut.wav", tone(seconds=2.0), subtype="PCM_16")
    cut.write_bytes(cut.read_bytes()[:20000])
    import pytest

    from paravox.errors import AudioError

    with pytest.raises(AudioError, match="truncated"):
        load_audio(cut)
