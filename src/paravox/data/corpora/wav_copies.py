"""``paravox prepare --to-wav``: decode compressed audio (VoxCeleb2's AAC, CREMA-D's MP3)
once into 16-bit WAV files beside the manifests, so that training reads WAV (about ten times
cheaper to decode than AAC, see docs/corpora.md) and needs no PyAV.

Copies go to ``OUT/wav/<id>.wav`` at the file's own rate and channel count (nothing is
resampled). Each copy is written to a temporary name and renamed, so no half-written copy
ever has a copy's name; an existing copy with the source's length is kept, so an
interrupted conversion of a million files resumes where it stopped. The copies are not
``fsync``-ed one by one (that doubled the cost per file, see docs/corpora.md): a copy that a
power loss left empty fails the length check on the next run and is written again.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import soundfile as sf
from tqdm import tqdm

from paravox.audio.io import audio_info, read_frames
from paravox.data.manifest import ManifestRow
from paravox.errors import AudioError
from paravox.utils.atomic_files import atomic_path

KEEP = frozenset({".wav", ".flac"})  # already cheap to read: not converted


def wav_copy_path(out: Path, row: ManifestRow) -> Path:
    """Where the WAV copy of ``row``'s audio goes: ``out/wav/<id>.wav`` (ids with ``/``
    become folders, as VoxCeleb's ``idNNNNN/VIDEO/NNNNN`` do)."""
    return out / "wav" / f"{row.id}.wav"


def convert_one(row: ManifestRow, target: Path) -> ManifestRow:
    """Decode ``row``'s file into ``target`` (kept when it already has the source's length)
    and return the row pointing at it; a decoding failure raises AudioError."""
    info = audio_info(row.path)
    if target.is_file():
        try:
            if sf.info(str(target)).frames == info.frames:
                return replace(row, path=str(target.resolve()))
        except (RuntimeError, sf.LibsndfileError):
            pass  # a bad copy: written again
    wave, sr = read_frames(row.path, 0, info.frames)
    if wave.shape[0] == 0:
        raise AudioError(row.path, "file holds no samples", kind="empty")
    with atomic_path(target, sync=False) as tmp:  # a bad copy fails the check above next run
        sf.write(str(tmp), np.clip(wave, -1.0, 1.0), sr, subtype="PCM_16", format="WAV")
    return replace(row, path=str(target.resolve()))


def convert_to_wav(rows: list[ManifestRow], out: Path, problems: list[str],
                   progress: bool = True, workers: int = 4) -> list[ManifestRow]:
    """Rows whose compressed audio is now a WAV copy under ``out/wav/``; rows already WAV or
    FLAC are returned as they are; a file that cannot be decoded is named in ``problems``
    and left out."""

    def convert(row: ManifestRow):
        if Path(row.path).suffix.lower() in KEEP:
            return row
        try:
            return convert_one(row, wav_copy_path(out, row))
        except AudioError as exc:
            return exc

    kept = []
    todo = sum(Path(r.path).suffix.lower() not in KEEP for r in rows)
    with ThreadPoolExecutor(max(1, workers)) as pool, tqdm(
            total=todo, desc="converting to WAV", unit=" files", disable=not progress or not todo,
            leave=False) as bar:
        for row, got in zip(rows, pool.map(convert, rows)):
            if Path(row.path).suffix.lower() not in KEEP:
                bar.update(1)
            if isinstance(got, AudioError):
                problems.append(f"{row.path}: {got.problem}; not converted, left out")
            else:
                kept.append(got)
    return kept
