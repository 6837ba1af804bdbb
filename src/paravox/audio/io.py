"""Read any sample rate and channel count; return 16 kHz mono float32.

soundfile (libsndfile) reads WAV/FLAC/OGG/MP3 and seeks inside a file, so a segment costs only
its own samples; AAC in MP4/M4A (VoxCeleb2) and other FFmpeg formats are decoded by PyAV
(:mod:`paravox.audio.compressed`, the ``audio`` extra). soxr does high-quality resampling at a
few hundred times real time per core.

Audio is read from a file path or from an :class:`AudioMember`: a file stored inside another
file (a member of a tar shard), read by its byte range or handed over as bytes already read.
Both go through the same checks, so an item of a shard fails the way its file would.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np
import soundfile as sf
import soxr

from paravox.audio.compressed import may_try_pyav, needs_pyav, pyav_info, pyav_read
from paravox.errors import AudioError

TARGET_SR = 16000


@dataclass(frozen=True)
class AudioMember:
    """An audio file stored inside another file (a tar shard): ``size`` bytes from byte
    ``offset`` of ``container``, or ``data`` when the caller already read them (a stream
    reading a shard in order). ``name`` (the member's name) goes into every error as
    ``container:name``, so a bad item is named as precisely as a bad file."""

    container: Path
    name: str
    offset: int = 0
    size: int = 0
    data: bytes | None = field(default=None, repr=False)

    def __str__(self) -> str:
        return f"{self.container}:{self.name}"

    def read_bytes(self) -> bytes:
        """The member's bytes (those given, else read from the container)."""
        if self.data is not None:
            return self.data
        try:
            with open(self.container, "rb") as fh:
                fh.seek(self.offset)
                data = fh.read(self.size)
        except OSError as exc:
            raise AudioError(self, f"cannot read the shard ({exc.strerror or exc})",
                             "check the shard folder", kind="missing") from None
        if len(data) != self.size:
            raise AudioError(self, f"the shard holds {len(data)} of the member's {self.size} "
                             f"bytes", "re-copy the shard or write it again with "
                             "`paravox shard`", kind="truncated")
        return data


AudioSource = str | Path | AudioMember


def open_source(source: AudioSource) -> str | BinaryIO:
    """What soundfile opens: a path as a string, a member as its bytes in memory."""
    if isinstance(source, AudioMember):
        return io.BytesIO(source.read_bytes())
    return str(source)


@dataclass(frozen=True)
class AudioInfo:
    """What a file's header says (rate, channels, length in frames at that rate): enough to
    check segments and count hours without decoding any audio."""

    sample_rate: int
    channels: int
    frames: int

    @property
    def duration(self) -> float:
        """Length in seconds (0 for a header that reports no sample rate)."""
        return self.frames / self.sample_rate if self.sample_rate else 0.0


def audio_info(path: AudioSource) -> AudioInfo:
    """Header information, without reading samples. Raises AudioError naming the file; a
    path that is not a regular file (a FIFO, a device, a folder) is refused before it is
    opened: reading a FIFO would wait forever for a writer."""
    if isinstance(path, AudioMember):
        return source_info(path, open_source(path))
    path = Path(path)
    if not path.exists():
        raise AudioError(path, "file not found", "check the manifest's path or its audio root",
                         kind="missing")
    if not path.is_file():
        what = "a folder" if path.is_dir() else "not a regular file (a FIFO, socket or device)"
        raise AudioError(path, f"{what}, not an audio file", "list audio files in the "
                         "manifest", kind="corrupt")
    return source_info(path, str(path))


def source_info(path: AudioSource, handle: str | BinaryIO) -> AudioInfo:
    """:func:`audio_info` of an opened source (``handle`` as :func:`open_source` gives it);
    compressed formats (judged by the file's or the member's extension) go to PyAV."""
    if needs_pyav(path):
        return AudioInfo(*pyav_info(path))
    try:
        info = sf.info(handle)
    except (RuntimeError, sf.LibsndfileError) as exc:
        if may_try_pyav(path):  # e.g. MP3 under a libsndfile older than 1.1
            try:
                return AudioInfo(*pyav_info(path))
            except AudioError:
                pass
        raise AudioError(path, f"unreadable or corrupt audio: {exc}",
                         "re-encode the file") from None
    return AudioInfo(int(info.samplerate), int(info.channels), int(info.frames))


def uses_pyav(path: AudioSource) -> bool:
    """Whether ``path``'s samples are decoded by PyAV rather than soundfile: its extension
    says so, or soundfile cannot open it and PyAV may try (see :func:`audio_info`)."""
    if needs_pyav(path):
        return True
    if not may_try_pyav(path):
        return False
    try:
        sf.info(open_source(path))
    except (RuntimeError, sf.LibsndfileError):
        return True
    return False


def read_frames(path: AudioSource, start: int, stop: int) -> tuple[np.ndarray, int]:
    """Frames ``[start, stop)`` at the file's own rate as float32 ``[samples, channels]`` and
    that rate, from soundfile or PyAV; a decoding failure is an AudioError naming the file."""
    if uses_pyav(path):
        return pyav_read(path, start, stop)
    try:
        wave, sr = sf.read(open_source(path), start=start, stop=stop, dtype="float32",
                           always_2d=True)
    except (RuntimeError, sf.LibsndfileError) as exc:
        raise AudioError(path, f"corrupt audio: {exc}", "re-encode the file") from None
    return wave, sr


def iter_blocks(path: AudioSource, start: int, stop: int, block: int):
    """Frames ``[start, stop)`` in blocks of up to ``block`` frames (float32 ``[n, channels]``)
    for scans of whole corpora that must not hold a long file in memory; compressed files
    are decoded whole (their segments are short). Raises AudioError on bad audio."""
    if uses_pyav(path):
        wave = pyav_read(path, start, stop)[0]
        for i in range(0, wave.shape[0], block):
            yield wave[i:i + block]
        return
    try:
        with sf.SoundFile(open_source(path)) as f:
            f.seek(start)
            left = stop - start
            while left > 0:
                chunk = f.read(min(block, left), dtype="float32", always_2d=True)
                if chunk.shape[0] == 0:
                    break
                left -= chunk.shape[0]
                yield chunk
    except (RuntimeError, OSError, sf.SoundFileError) as exc:
        raise AudioError(path, f"unreadable or corrupt audio: {exc}", "re-encode the file"
                         ) from None


def to_mono(wave: np.ndarray) -> np.ndarray:
    """Average channels: [T, C] -> [T]."""
    return wave.mean(axis=1) if wave.ndim == 2 else wave


def resample(wave: np.ndarray, sr_in: int, sr_out: int = TARGET_SR) -> np.ndarray:
    """Resample ``wave`` from ``sr_in`` to ``sr_out`` Hz with soxr's HQ filter, as float32.

    Everything downstream assumes 16 kHz; a wave already at ``sr_out`` is returned as is.
    """
    if sr_in == sr_out:
        return wave
    return soxr.resample(wave, sr_in, sr_out, quality="HQ").astype(np.float32, copy=False)


@dataclass
class WavHeader:
    """What a RIFF/WAVE header promises: frames in the data chunk and frames actually present."""

    declared_frames: int
    present_frames: int


def wav_header(path: Path | AudioMember) -> WavHeader | None:
    """Walk the chunks of a RIFF/WAVE file; None if it is not one or its data length is unknown
    (0, or a placeholder from 0x7FFFF000 up, written by streaming recorders and SoX on a
    pipe). libsndfile silently clamps the frame
    count of a truncated file to what is present, so truncation is only visible in the header:
    :func:`load_audio` refuses such a file and ``paravox manifest validate`` reports it."""
    try:
        if isinstance(path, AudioMember):
            data = path.read_bytes()
            size, opened = len(data), io.BytesIO(data)
        else:
            size, opened = path.stat().st_size, path.open("rb")
        with opened as fh:
            head = fh.read(12)
            if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
                return None
            block_align = 0
            pos = 12
            for _ in range(256):
                fh.seek(pos)
                chunk = fh.read(8)
                if len(chunk) < 8:
                    return None
                cid, csize = chunk[:4], struct.unpack("<I", chunk[4:])[0]
                if cid == b"fmt ":
                    fmt = fh.read(16)
                    if len(fmt) < 16:
                        return None
                    block_align = struct.unpack("<H", fmt[12:14])[0]
                elif cid == b"data":
                    # 0, or >= 0x7FFFF000 (SoX on a pipe, 0xFFFFFFFF): length not written
                    if not block_align or csize == 0 or csize >= 0x7FFFF000:
                        return None
                    present = max(0, min(csize, size - pos - 8))
                    return WavHeader(csize // block_align, present // block_align)
                pos += 8 + csize + (csize & 1)
    except (OSError, AudioError):
        return None
    return None


def load_audio(
    path: AudioSource,
    offset: float = 0.0,
    duration: float | None = None,
    target_sr: int = TARGET_SR,
    *,
    check_finite: bool = True,
) -> np.ndarray:
    """Load ``[offset, offset+duration)`` seconds of ``path`` (a file, or an
    :class:`AudioMember` of a shard) as mono float32 at ``target_sr``.

    Fails early, naming the file, when it is missing, corrupt, empty, the segment lies beyond
    the end of the file, or the samples are not finite (NaN/Inf, possible in float WAVs).
    """
    if isinstance(path, AudioMember) and path.data is None:  # read the member's bytes once
        path = replace(path, data=path.read_bytes())
    info = audio_info(path)
    start = int(round(offset * info.sample_rate))
    stop = info.frames if duration is None else start + int(round(duration * info.sample_rate))
    if info.frames == 0:
        raise AudioError(path, "file holds no samples", "remove it from the manifest",
                         kind="empty")
    # segment ends rounded in a segments file may overshoot the end by a few milliseconds
    tolerance = int(0.02 * info.sample_rate)
    if start >= info.frames or stop > info.frames + tolerance or start < 0:
        raise AudioError(
            path,
            f"segment {offset:.3f}s+{duration}s lies outside the file "
            f"({info.duration:.3f}s long)",
            "fix the offset/duration of this row (Kaldi: the segments file)",
            kind="segment",
        )
    wav = wav_header(path if isinstance(path, AudioMember) else Path(path))
    if wav is not None and wav.declared_frames > wav.present_frames and (
            duration is None or stop > wav.present_frames + tolerance):
        raise AudioError(path, f"truncated: the header promises {wav.declared_frames} frames "
                         f"but only {wav.present_frames} are in the file",
                         "re-copy or re-encode it", kind="truncated")
    wave, sr = read_frames(path, start, min(stop, info.frames))
    wave = to_mono(np.asarray(wave, dtype=np.float32))
    if wave.size == 0:
        raise AudioError(path, "segment holds no samples", "fix offset/duration or drop the row",
                         kind="empty")
    if check_finite and not np.isfinite(wave).all():
        raise AudioError(path, "audio contains NaN or Inf samples", "re-encode or drop the file",
                         kind="nan")
    return resample(wave, sr, target_sr)
