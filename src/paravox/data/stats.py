"""Corpus statistics of a manifest: counts, hours, durations, label distributions."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from paravox.audio.io import audio_info
from paravox.data.manifest import Manifest
from paravox.utils.wording import plural


def manifest_stats(path: str | Path) -> dict:
    """Counts, hours, duration quantiles, languages, label distributions and alignment
    coverage of a manifest, as a JSON-serialisable dict (``paravox manifest stats``).

    Rows without a ``duration`` are timed from their file's header, so no audio is decoded;
    labels with more than 50 distinct values (free-form) are not tabulated.
    """
    m = Manifest.load(path)
    durations = []
    for r in m:
        if r.duration is not None:
            durations.append(r.duration)
        else:
            info = audio_info(m.audio_path(r))
            durations.append(info.duration - r.offset)
    d = np.asarray(durations, dtype=float)
    labels: dict[str, Counter] = {}
    for r in m:
        for k, v in r.labels.items():
            if isinstance(v, (str, int, bool)):
                labels.setdefault(k, Counter())[str(v)] += 1
    speakers = Counter(r.speaker for r in m if r.speaker is not None)
    return {
        "manifest": str(path),
        "utterances": len(m),
        "hours": float(d.sum() / 3600),
        "speakers": len(speakers),
        "utts_per_speaker": (float(np.mean(list(speakers.values()))) if speakers else 0.0),
        "duration_s": {"min": float(d.min()), "p50": float(np.median(d)), "max": float(d.max()),
                       "mean": float(d.mean())} if d.size else {},
        "languages": dict(Counter(r.language for r in m if r.language)),
        "labels": {k: dict(sorted(c.items())) for k, c in sorted(labels.items())
                   if len(c) <= 50},  # free-form labels with many values are not tabulated
        "with_alignment": sum(r.alignment is not None for r in m),
    }


def format_stats(s: dict) -> str:
    """:func:`manifest_stats`' dict as a few human-readable lines for the terminal."""
    lines = [f"{s['manifest']}: {plural(s['utterances'], 'utterance')}, {s['hours']:.2f} h, "
             f"{plural(s['speakers'], 'speaker')} ({s['utts_per_speaker']:.1f} utts/speaker)"]
    if s["duration_s"]:
        d = s["duration_s"]
        lines.append(f"  duration (s): min {d['min']:.2f}  median {d['p50']:.2f}  "
                     f"mean {d['mean']:.2f}  max {d['max']:.2f}")
    if s["languages"]:
        lines.append("  languages: " + ", ".join(f"{k}={v}" for k, v in
                                                 sorted(s["languages"].items())))
    for k, c in s["labels"].items():
        lines.append(f"  {k}: " + ", ".join(f"{v}={n}" for v, n in c.items()))
    lines.append(f"  frame alignments: {s['with_alignment']}/{s['utterances']}")
    return "\n".join(lines)
