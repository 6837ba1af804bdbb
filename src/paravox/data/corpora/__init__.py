"""``paravox prepare CORPUS SRC -o OUT``: the standard corpora, as their owners distribute
them, turned into paravox manifests (and, for VoxCeleb1, the official trial lists).

One module per corpus reads its layout and metadata (:mod:`.voxceleb`, :mod:`.librispeech`,
:mod:`.musan`, :mod:`.rirs_noises`, :mod:`.cremad`, :mod:`.iemocap`, :mod:`.ravdess`);
:mod:`.corpus_kit` holds what they share and :mod:`.wav_copies` the ``--to-wav``
conversion. Each preparer is registered in :data:`PREPARERS` by its command-line name;
:func:`prepare_corpus` runs one and writes its output. Nothing is downloaded: a missing part
is a one-line error naming it and where to get it, and bad items (an unreadable file, an
unknown speaker) are each named while the good ones are kept. docs/corpora.md walks the
whole path from download to evaluation.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from paravox.data.corpora.corpus_kit import CorpusError, Prepared
from paravox.data.corpora.cremad import prepare_cremad
from paravox.data.corpora.iemocap import prepare_iemocap
from paravox.data.corpora.librispeech import prepare_librispeech
from paravox.data.corpora.musan import prepare_musan
from paravox.data.corpora.ravdess import prepare_ravdess
from paravox.data.corpora.rirs_noises import prepare_rirs_noises
from paravox.data.corpora.voxceleb import prepare_voxceleb1, prepare_voxceleb2
from paravox.data.corpora.wav_copies import convert_to_wav
from paravox.data.manifest import ManifestRow, write_manifest
from paravox.errors import ConfigError
from paravox.utils.atomic_files import write_text
from paravox.utils.folder_lock import hold_folder
from paravox.utils.output_paths import check_output_folder

REPORT = "prepare_report.json"


@dataclass(frozen=True)
class CorpusPreparer:
    """One corpus: its command-line name, what ``prepare`` makes of it, where to get it, and
    the function that reads it (``(src, progress, workers, check_audio) -> Prepared``)."""

    name: str
    summary: str
    url: str
    prepare: Callable[..., Prepared]


PREPARERS: dict[str, CorpusPreparer] = {p.name: p for p in (
    CorpusPreparer("voxceleb1", "dev/test/all manifests (speaker, gender, nationality), "
                   "the Vox1-O/E/H trial lists, the identification split",
                   "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/",
                   prepare_voxceleb1),
    CorpusPreparer("voxceleb2", "dev/test manifests (speaker, gender) of the AAC audio",
                   "https://www.robots.ox.ac.uk/~vgg/data/voxceleb/", prepare_voxceleb2),
    CorpusPreparer("librispeech", "one manifest per subset and train-960 (speaker, gender, "
                   "chapter, text)", "https://www.openslr.org/12", prepare_librispeech),
    CorpusPreparer("musan", "music, noise and speech manifests (genres, vocals)",
                   "https://www.openslr.org/17", prepare_musan),
    CorpusPreparer("rirs_noises", "simulated and real RIRs, isotropic and point-source noises",
                   "https://www.openslr.org/28", prepare_rirs_noises),
    CorpusPreparer("cremad", "all clips (emotion, intensity, speaker, gender, age) and 5 "
                   "speaker-disjoint folds", "https://github.com/CheyneyComputerScience/CREMA-D",
                   prepare_cremad),
    CorpusPreparer("iemocap", "all utterances (emotion, emotion4, valence/arousal/dominance, "
                   "session) and 5 leave-one-session-out folds", "https://sail.usc.edu/iemocap/",
                   prepare_iemocap),
    CorpusPreparer("ravdess", "speech and song clips (emotion, intensity, statement, gender) "
                   "and 5 speaker-disjoint folds", "https://zenodo.org/records/1188976",
                   prepare_ravdess),
)}


def check_folders(src: Path, out: Path) -> None:
    """Refuse an output folder that is the corpus folder, inside it or around it: prepare
    writes there (and ``--to-wav`` writes audio), which must never mix with the inputs."""
    check_output_folder(out, "-o")
    s, o = Path(os.path.abspath(src)).resolve(), Path(os.path.abspath(out)).resolve()
    if s == o or s in o.parents or o in s.parents:
        where = "is" if s == o else ("is inside" if s in o.parents else "holds")
        raise ConfigError(f"-o {out}: {where} the corpus folder {src}; write the manifests to "
                          f"a folder of their own (e.g. data/NAME), so that the corpus is "
                          f"never written over")


def unique_ids(name: str, rows: list[ManifestRow], problems: list[str]) -> list[ManifestRow]:
    """``rows`` without a second row of one id (named in ``problems``): ids must be unique."""
    seen: dict[str, str] = {}
    kept = []
    for r in rows:
        if r.id in seen:
            problems.append(f"{r.path}: id {r.id} in {name} again (first: {seen[r.id]}); left "
                            f"out")
            continue
        seen[r.id] = r.path
        kept.append(r)
    return kept


def summarise(rows: list[ManifestRow]) -> dict:
    """Rows, hours (of the rows whose duration is known) and speakers of one manifest."""
    return {"rows": len(rows),
            "hours": round(sum(r.duration or 0.0 for r in rows) / 3600, 3),
            "speakers": len({r.speaker for r in rows if r.speaker is not None})}


def prepare_corpus(name: str, src: str | Path, out: str | Path, *, progress: bool = True,
                   workers: int = 4, check_audio: bool = True, to_wav: bool = False) -> dict:
    """Read corpus ``name`` (a key of :data:`PREPARERS`) from ``src`` and write its
    manifests, trial lists and ``prepare_report.json`` (every problem and note) into
    ``out``; with ``to_wav``, compressed audio is first converted once into ``out/wav/``.
    Returns the report. One process at a time per ``out`` (a folder lock); a folder holding
    another corpus's output is refused. ``check_audio=False`` skips reading each file's
    header (durations stay unknown, unreadable files are found later by ``paravox manifest
    validate``)."""
    if name not in PREPARERS:
        raise ConfigError(f"unknown corpus '{name}'; choose one of {', '.join(PREPARERS)}")
    src, out = Path(src), Path(out)
    check_folders(src, out)
    if not src.is_dir():
        raise CorpusError(f"{src}: not a folder; give the folder {name} was unpacked into "
                          f"(get it from {PREPARERS[name].url})")
    with hold_folder(out, "-o"):
        earlier, stale = previous_outputs(out)
        if earlier not in (None, name):
            raise ConfigError(f"-o {out}: holds the output of `paravox prepare {earlier}`; "
                              f"give each corpus a folder of its own (e.g. data/{name})")
        got = PREPARERS[name].prepare(src, progress=progress, workers=workers,
                                      check_audio=check_audio)
        return write_prepared(name, src, out, got, stale, progress=progress,
                              workers=workers, to_wav=to_wav)


def previous_outputs(out: Path) -> tuple[str | None, set[str]]:
    """The corpus an earlier ``prepare`` into ``out`` read, and the manifests and trial lists
    it wrote (from its ``prepare_report.json``; ``(None, set())`` when there is none)."""
    try:
        report = json.loads((out / REPORT).read_text())
        return str(report["corpus"]), {str(k) for part in ("manifests", "trials")
                                       for k in report.get(part, {})}
    except (OSError, ValueError, AttributeError, KeyError, TypeError):
        return None, set()


def write_prepared(name: str, src: Path, out: Path, got: Prepared, stale: set[str], *,
                   progress: bool, workers: int, to_wav: bool) -> dict:
    """Write what a preparer returned (see :func:`prepare_corpus`). A manifest or trial list
    that an earlier run wrote and this one does not (``stale``: a list now found bad) is
    removed, so that no stale file is left beside the new ones."""
    manifests = {k: unique_ids(k, rows, got.problems) for k, rows in got.manifests.items()}
    if not any(manifests.values()):
        raise CorpusError(f"{src}: no usable {name} audio; "
                          + ("; ".join(got.problems[:3]) or "see the corpus layout in "
                             "docs/corpora.md"))
    if to_wav:
        union = {r.path: r for rows in manifests.values() for r in rows}
        converted = {r.id: r for r in convert_to_wav(list(union.values()), out, got.problems,
                                                     progress, workers)}
        manifests = {k: [replace(r, path=converted[r.id].path) for r in rows
                         if r.id in converted] for k, rows in manifests.items()}
    for rel, rows in manifests.items():
        if rows:
            write_manifest(rows, out / rel)
            stale.discard(rel)
    for rel, text in got.texts.items():
        write_text(out / rel, text)
        stale.discard(rel)
    for rel in sorted(stale):
        if not Path(rel).is_absolute() and ".." not in Path(rel).parts:
            (out / rel).unlink(missing_ok=True)
            got.notes.append(f"removed {out / rel}, written by an earlier run but not by this one")
    report = {"corpus": name, "source": str(src.resolve()),
              "manifests": {k: summarise(v) for k, v in manifests.items() if v},
              "trials": {k: text.count("\n") for k, text in got.texts.items()},
              "to_wav": to_wav, "problems": got.problems, "notes": got.notes}
    write_text(out / REPORT, json.dumps(report, indent=2, ensure_ascii=False) + "\n")
    return report


__all__ = ["PREPARERS", "CorpusError", "CorpusPreparer", "Prepared", "prepare_corpus"]
