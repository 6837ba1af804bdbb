"""Compressed audio round trips: a known signal written as FLAC, OGG/Vorbis, MP3 and AAC/M4A
comes back through paravox's reader with the exact length and rate, and close to the signal
(exactly for FLAC; above an SNR bound for the lossy codecs)."""

import json

import numpy as np
import pytest
import soundfile as sf

from paravox.audio import compressed
from paravox.audio.io import audio_info, load_audio
from paravox.data.validate import validate_manifest
from paravox.errors import AudioError, ConfigError

av = pytest.importorskip("av")


def signal(seconds: float, sr: int, channels: int = 1) -> np.ndarray:
    """Speech-band content: a few tones with a slow amplitude envelope (deterministic)."""
    t = np.arange(int(round(seconds * sr))) / sr
    env = 0.6 + 0.4 * np.sin(2 * np.pi * 1.3 * t)
    x = sum(a * np.sin(2 * np.pi * f * t + p)
            for a, f, p in ((0.25, 220, 0), (0.15, 587, 1), (0.08, 1450, 2)))
    x = (env * x).astype(np.float32)
    return x if channels == 1 else np.stack([x, 0.5 * x], axis=1)


def snr_db(ref: np.ndarray, got: np.ndarray) -> float:
    return float(10 * np.log10(np.sum(ref ** 2) / np.sum((ref - got) ** 2)))


def write(path, x, sr):
    """Write ``x`` in the container its extension names (soundfile, or PyAV for .m4a)."""
    suffix = path.suffix
    if suffix == ".m4a":
        compressed.write_aac(path, x, sr, bitrate=96000)
    else:
        kind = {".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS"),
                ".mp3": ("MP3", "MPEG_LAYER_III")}[suffix]
        sf.write(str(path), x, sr, format=kind[0], subtype=kind[1])
    return path


# (extension, minimum SNR in dB after decoding at 16 kHz): FLAC is lossless (16-bit)
FORMATS = [(".flac", 60.0), (".ogg", 25.0), (".mp3", 25.0), (".m4a", 25.0)]


@pytest.mark.parametrize("ext,min_snr", FORMATS)
def test_round_trip_exact_length_and_close_signal(tmp_path, ext, min_snr):
    sr, seconds = 16000, 1.37  # not a whole number of codec frames
    x = signal(seconds, sr)
    path = write(tmp_path / f"a{ext}", x, sr)
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.frames) == (sr, 1, x.size)
    y = load_audio(path)
    assert y.dtype == np.float32 and y.shape == x.shape
    assert np.corrcoef(x, y)[0, 1] > 0.98
    assert snr_db(x, y) > min_snr


@pytest.mark.parametrize("ext", [".ogg", ".mp3", ".m4a"])
def test_stereo_44k_becomes_16k_mono(tmp_path, ext):
    x = signal(1.0, 44100, channels=2)
    path = write(tmp_path / f"s{ext}", x, 44100)
    info = audio_info(path)
    assert (info.sample_rate, info.channels, info.frames) == (44100, 2, 44100)
    y = load_audio(path)
    assert y.size == 16000
    ref = load_audio(write(tmp_path / "ref.flac", x, 44100))
    assert snr_db(ref, y) > 12.0


def test_m4a_segment_matches_the_slice_of_the_whole_file(tmp_path):
    """A segment read after a seek (offset > the pre-roll) equals the same samples of the
    whole decoded file: frames are placed by their timestamps."""
    sr = 16000
    path = write(tmp_path / "long.m4a", signal(6.0, sr), sr)
    whole = load_audio(path)
    seg = load_audio(path, offset=3.2, duration=1.5)
    assert seg.size == int(1.5 * sr)
    start = int(3.2 * sr)
    np.testing.assert_allclose(seg, whole[start:start + seg.size], atol=1e-4)
    tail = load_audio(path, offset=5.0)  # to the end
    np.testing.assert_allclose(tail, whole[5 * sr:], atol=1e-4)


def test_corrupt_m4a_is_named(tmp_path):
    bad = tmp_path / "broken.m4a"
    bad.write_bytes(b"\x00\x00\x00\x18ftypM4A junk that is not an mp4 file at all")
    with pytest.raises(AudioError, match="broken.m4a: unreadable or corrupt"):
        load_audio(bad)


def test_without_pyav_m4a_says_how_to_install(tmp_path, monkeypatch):
    path = write(tmp_path / "a.m4a", signal(0.5, 16000), 16000)
    monkeypatch.setattr(compressed, "pyav", lambda: None)
    with pytest.raises(ConfigError, match=r"a.m4a: .m4a audio needs PyAV.*paravox\[audio\]"):
        load_audio(path)
    assert load_audio(write(tmp_path / "b.flac", signal(0.5, 16000), 16000)).size == 8000


def test_validate_reads_compressed_files(tmp_path):
    rows = []
    for ext, _ in FORMATS:
        p = write(tmp_path / f"v{ext}", signal(1.0, 16000), 16000)
        rows.append({"id": ext[1:], "path": str(p)})
    bad = tmp_path / "bad.m4a"
    bad.write_bytes(b"not audio")
    rows.append({"id": "bad", "path": str(bad)})
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = validate_manifest(manifest, progress=False)
    kinds = {(p.id, p.kind) for p in report.problems}
    assert kinds == {("bad", "corrupt")}
    assert report.total_seconds == pytest.approx(4.0, abs=1e-3)
