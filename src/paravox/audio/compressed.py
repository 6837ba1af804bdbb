"""Audio that libsndfile cannot read, decoded in process by FFmpeg through PyAV.

VoxCeleb2 is distributed as AAC in MP4 (``.m4a``), which libsndfile has no codec for; PyAV
(the ``audio`` extra: ``pip install 'paravox[audio]'``) ships FFmpeg in its wheels, so no
system FFmpeg is needed. WAV, FLAC, OGG and MP3 stay with soundfile (:mod:`paravox.audio.io`),
which seeks sample-exactly and is faster to open.

Lengths are exact: an AAC encoder's priming samples are dropped by FFmpeg (the MP4 edit list)
and the padding after the last sample is cut at the length the container declares, so a
decoded file has the sample count of the signal that was encoded. A segment is read by seeking
half a second before it and decoding from there (an AAC frame needs its predecessor to decode
correctly), so a crop of a long file does not decode the whole file.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np

from paravox.errors import AudioError, ConfigError

# extensions libsndfile has no reader for: always decoded by PyAV
PYAV_EXTENSIONS = frozenset({".m4a", ".mp4", ".aac", ".m4b", ".3gp", ".webm", ".mka", ".mkv",
                             ".wma", ".wmv", ".amr"})
# extensions libsndfile reads (by content, whatever the name): never handed to PyAV, so a
# corrupt WAV is reported as corrupt instead of being half-read by a more tolerant decoder
SNDFILE_EXTENSIONS = frozenset({".wav", ".wave", ".flac", ".ogg", ".oga", ".opus", ".aif",
                                ".aiff", ".aifc", ".au", ".snd", ".w64", ".rf64", ".caf",
                                ".sph", ".nist", ".htk", ".voc"})
PREROLL_SECONDS = 0.5  # decoded and dropped before a segment: the codec's warm-up
INSTALL_HINT = "pip install 'paravox[audio]' (PyAV, which bundles FFmpeg)"

_PYAV = []  # the PyAV module once imported (an optional dependency, imported where used)


def pyav():
    """The PyAV module, imported on first use (it costs ~90 ms, which a command that reads
    no compressed audio should not pay); None when the ``audio`` extra is not installed."""
    if not _PYAV:
        try:
            import av  # optional dependency: the ``audio`` extra
        except ImportError:
            return None
        _PYAV.append(av)
    return _PYAV[0]


def have_pyav() -> bool:
    """Whether PyAV is installed, so that AAC/M4A and other FFmpeg formats can be read."""
    return pyav() is not None


def needs_pyav(path: str | Path) -> bool:
    """Whether ``path`` is in a container libsndfile cannot read (judged by its extension)."""
    return Path(str(path)).suffix.lower() in PYAV_EXTENSIONS


def may_try_pyav(path: str | Path) -> bool:
    """Whether a file soundfile failed on may be handed to PyAV: an extension that is not one
    of libsndfile's own (e.g. ``.mp3`` under a libsndfile older than 1.1), and PyAV present."""
    return have_pyav() and Path(str(path)).suffix.lower() not in SNDFILE_EXTENSIONS


def require_pyav(path: str | Path):
    """The PyAV module, or a one-line error saying how to install it. A ConfigError, not an
    AudioError: the file is fine, the installation lacks a decoder, and a data loader must
    not skip every such file as unreadable."""
    av = pyav()
    if av is None:
        raise ConfigError(f"{path}: {Path(str(path)).suffix or 'this'} audio needs PyAV to be "
                          f"decoded; install it with {INSTALL_HINT}, or convert the corpus "
                          f"to WAV once with `paravox prepare ... --to-wav`")
    return av


def _open(path):
    av = require_pyav(path)
    # a path, or a shard member (paravox.audio.io.AudioMember): its bytes, opened in memory
    source = str(path) if isinstance(path, (str, Path)) else io.BytesIO(path.read_bytes())
    try:
        container = av.open(source, mode="r")
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise AudioError(path, f"unreadable or corrupt audio: {exc}", "re-encode the file"
                         ) from None
    if not container.streams.audio:
        container.close()
        raise AudioError(path, "holds no audio stream", "give an audio file")
    return container


def _frames_of(stream, container) -> int:
    """The declared length in samples: the stream's duration, else the container's."""
    rate = stream.rate or stream.codec_context.sample_rate
    if stream.duration is not None and stream.time_base is not None:
        return int(round(float(stream.duration * stream.time_base) * rate))
    if container.duration is not None:  # in microseconds (av.time_base)
        return int(round(container.duration / 1_000_000 * rate))
    return -1


def pyav_info(path: str | Path) -> tuple[int, int, int]:
    """``(sample_rate, channels, frames)`` from the container's header, decoding nothing
    (the few files whose header declares no length are decoded once to count)."""
    container = _open(path)
    try:
        stream = container.streams.audio[0]
        rate = int(stream.rate or stream.codec_context.sample_rate or 0)
        channels = int(stream.codec_context.channels or 1)
        frames = _frames_of(stream, container)
    finally:
        container.close()
    if frames < 0:
        frames = pyav_read(path, 0, None)[0].shape[0]
    return rate, channels, frames


def frame_array(frame) -> np.ndarray:
    """One decoded frame as float32 ``[samples, channels]``, integers scaled by their range."""
    a = frame.to_ndarray()
    channels = len(frame.layout.channels)
    a = a.T if frame.format.is_planar else a.reshape(-1, channels)
    if a.dtype == np.uint8:
        return (a.astype(np.float32) - 128.0) / 128.0
    if a.dtype.kind == "i":
        return a.astype(np.float32) / float(2 ** (8 * a.dtype.itemsize - 1))
    return a.astype(np.float32, copy=False)


def pyav_read(path: str | Path, start: int = 0, stop: int | None = None
              ) -> tuple[np.ndarray, int]:
    """Samples ``[start, stop)`` (frames at the file's own rate; ``stop=None``: to the end)
    as float32 ``[samples, channels]`` and the rate. Each decoded frame is placed by its
    timestamp, so the result is the same whether decoding began at the file's start or at a
    seek point ``PREROLL_SECONDS`` before ``start``."""
    av = require_pyav(path)
    container = _open(path)
    try:
        stream = container.streams.audio[0]
        rate = int(stream.rate or stream.codec_context.sample_rate)
        total = _frames_of(stream, container)
        end = total if stop is None else (stop if total < 0 else min(stop, total))
        origin = stream.start_time or 0
        tb = float(stream.time_base) if stream.time_base is not None else 1.0 / rate
        seek_at = start - int(PREROLL_SECONDS * rate)
        if seek_at > 0:
            container.seek(origin + int(seek_at / rate / tb), stream=stream, backward=True,
                           any_frame=False)
        parts: list[np.ndarray] = []
        pos = None
        for frame in container.decode(stream):
            a = frame_array(frame)
            if frame.pts is not None:
                pos = int(round((frame.pts - origin) * tb * rate))
            elif pos is None:
                pos = 0
            lo, hi = max(start - pos, 0), a.shape[0] if end < 0 else min(end - pos, a.shape[0])
            if hi > lo:
                parts.append(a[lo:hi])
            pos += a.shape[0]
            if end >= 0 and pos >= end:
                break
    except av.FFmpegError as exc:
        raise AudioError(path, f"corrupt audio: {exc}", "re-encode the file") from None
    finally:
        container.close()
    if not parts:
        return np.zeros((0, 1), np.float32), rate
    return np.concatenate(parts, axis=0), rate


def write_aac(path: str | Path, wave: np.ndarray, sample_rate: int, bitrate: int = 64000
              ) -> Path:
    """Encode float ``wave`` (``[samples]`` or ``[samples, channels]``) as AAC in an MP4
    container (``.m4a``, as VoxCeleb2 is distributed), with FFmpeg's native AAC encoder.
    For corpus fixtures, tests and benchmarks: paravox itself only decodes such files."""
    av = require_pyav(path)
    wave = np.asarray(wave, dtype=np.float32)
    wave = wave[:, None] if wave.ndim == 1 else wave
    layout = {1: "mono", 2: "stereo"}.get(wave.shape[1])
    if layout is None:
        raise ValueError(f"write_aac: {wave.shape[1]} channels; give mono or stereo audio")
    with av.open(str(path), mode="w", format="mp4") as container:
        stream = container.add_stream("aac", rate=sample_rate, layout=layout)
        stream.bit_rate = bitrate
        step = 1024  # the AAC frame: timestamps per frame let the muxer write exact lengths
        for i in range(0, wave.shape[0], step):
            frame = av.AudioFrame.from_ndarray(np.ascontiguousarray(wave[i:i + step].T),
                                               format="fltp", layout=layout)
            frame.sample_rate = sample_rate
            frame.pts = i
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return Path(path)
