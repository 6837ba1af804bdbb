"""Benchmark: decoding speed of compressed audio (AAC/M4A through PyAV, MP3/OGG/FLAC through
soundfile) against 16-bit WAV, through paravox's reader, and the cost of `prepare --to-wav`.

``--files`` (default 100) files of ``--seconds`` (default 4 s) of speech-band audio at
16 kHz mono are written once per format into a temporary folder: WAV (PCM 16), FLAC, OGG
Vorbis, MP3 (soundfile) and AAC in M4A at 64 kbit/s (PyAV, FFmpeg's native AAC encoder;
VoxCeleb2's files are AAC in M4A of this order of bit rate). For each format, timed in one
process and one thread, the best of ``--repeats`` passes (the machine is shared):

* ``header``: :func:`paravox.audio.io.audio_info` per file (what `prepare` reads per file);
* ``whole file``: :func:`paravox.audio.io.load_audio` of every whole file, as seconds of
  audio decoded per second of wall time (x real time) and milliseconds per file;
* ``2 s crop``: ``load_audio`` of a 2 s segment at a fixed pseudo-random offset (what a
  training crop reads; AAC seeks with a 0.5 s pre-roll).

Then ``--to-wav`` is timed: :func:`paravox.data.corpora.wav_copies.convert_to_wav` of the M4A
files with one worker, as files and seconds of audio converted per second.

Run from the repository root::

    python benchmarks/bench_compressed_audio.py
    python benchmarks/bench_compressed_audio.py --files 200 --seconds 8

The table is printed and written to ``benchmarks/results/bench_compressed_audio.md``.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

from _report import emit_table, machine_line
from paravox.audio.compressed import have_pyav, write_aac
from paravox.audio.io import audio_info, load_audio
from paravox.data.corpora.wav_copies import convert_to_wav
from paravox.data.manifest import ManifestRow

RESULTS = Path(__file__).resolve().parent / "results"
SR = 16000
FORMATS = {".wav": ("WAV", "PCM_16"), ".flac": ("FLAC", "PCM_16"), ".ogg": ("OGG", "VORBIS"),
           ".mp3": ("MP3", "MPEG_LAYER_III"), ".m4a": None}


def speechlike(seconds: float, seed: int) -> np.ndarray:
    """Harmonics of a wandering pitch under a syllable-rate envelope, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * SR)) / SR
    f0 = 110 + 60 * rng.random() + 20 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SR
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    env = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t + rng.random() * 6) ** 2
    return (0.1 * env * x + 0.005 * rng.standard_normal(t.size)).astype(np.float32)


def write_all(folder: Path, n: int, seconds: float) -> dict[str, list[Path]]:
    out: dict[str, list[Path]] = {ext: [] for ext in FORMATS}
    for i in range(n):
        x = speechlike(seconds, i)
        for ext, kind in FORMATS.items():
            path = folder / ext[1:] / f"{i:05d}{ext}"
            path.parent.mkdir(parents=True, exist_ok=True)
            if kind is None:
                write_aac(path, x, SR, bitrate=64000)
            else:
                sf.write(str(path), x, SR, format=kind[0], subtype=kind[1])
            out[ext].append(path)
    return out


def best_of(repeats: int, fn) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--files", type=int, default=100)
    p.add_argument("--seconds", type=float, default=4.0)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", type=Path, default=RESULTS / "bench_compressed_audio.md")
    args = p.parse_args(argv)
    if not have_pyav():
        print("needs PyAV: pip install 'paravox[audio]'", file=sys.stderr)
        return 2
    rng = np.random.default_rng(0)
    offsets = rng.uniform(0, args.seconds - 2.0, args.files)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        files = write_all(Path(tmp), args.files, args.seconds)
        total = args.files * args.seconds
        for ext, paths in files.items():
            size = sum(f.stat().st_size for f in paths) / len(paths) / 1024
            t_head = best_of(args.repeats, lambda ps=paths: [audio_info(f) for f in ps])
            t_whole = best_of(args.repeats, lambda ps=paths: [load_audio(f) for f in ps])
            t_crop = best_of(args.repeats, lambda ps=paths: [
                load_audio(f, offset=float(o), duration=2.0) for f, o in zip(ps, offsets)])
            rows.append((ext[1:], size, 1000 * t_head / len(paths), total / t_whole,
                         1000 * t_whole / len(paths), 1000 * t_crop / len(paths)))
            print(f"{ext}: {total / t_whole:.0f}x real time", file=sys.stderr)
        m4a = [ManifestRow(id=f.stem, path=str(f)) for f in files[".m4a"]]
        t0 = time.perf_counter()
        problems: list[str] = []
        convert_to_wav(m4a, Path(tmp) / "converted", problems, progress=False, workers=1)
        t_conv = time.perf_counter() - t0
    lines = [
        "## Decoding compressed audio vs WAV (paravox.audio.io, one thread)",
        "",
        f"Machine: {machine_line()}",
        "",
        f"{args.files} files of {args.seconds:g} s, 16 kHz mono, speech-like signal; best of "
        f"{args.repeats} passes. AAC at 64 kbit/s in M4A (PyAV, FFmpeg native encoder); MP3, "
        f"OGG Vorbis and FLAC by libsndfile.",
        "",
        "| format | KiB per file | header ms/file | whole file x real time | whole file "
        "ms/file | 2 s crop ms/file |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, size, head, rt, ms, crop in rows:
        lines.append(f"| {name} | {size:.0f} | {head:.2f} | {rt:.0f} | {ms:.2f} | {crop:.2f} |")
    failed = f"; problems: {problems}" if problems else ""
    lines += ["", f"`prepare --to-wav` of the {args.files} M4A files, one worker: "
              f"{t_conv:.2f} s ({args.files / t_conv:.0f} files/s, "
              f"{total / t_conv:.0f}x real time){failed}."]
    emit_table(lines, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
