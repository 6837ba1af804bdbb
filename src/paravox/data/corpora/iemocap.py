"""IEMOCAP as released (``IEMOCAP_full_release``): ``SessionN/sentences/wav/DIALOG/
UTTERANCE.wav`` and, per dialog, ``SessionN/dialog/EmoEvaluation/DIALOG.txt`` whose summary
lines read ``[START - END]<TAB>UTTERANCE<TAB>EMOTION<TAB>[V, A, D]``.

Each of the five sessions has two actors, one female and one male; the last field of an
utterance name (``F000``, ``M012``) says who speaks, so the speaker is ``Ses01F`` and the
like. Rows carry ``emotion`` (the annotators' majority: neutral, happy, excited, angry, sad,
frustrated, surprised, fearful, disgust, other, or ``undecided`` for ``xxx``),
``emotion4`` (the four-class task most papers report: angry, happy with excited merged in,
neutral, sad; absent on other rows), valence, arousal and dominance (1-5), session, gender
and dialog type (improvised, scripted).

``all.jsonl`` holds every utterance; ``folds/session{1..5}_{train,test}.jsonl`` are the
leave-one-session-out folds of the four-class rows (5,531 utterances in the full release):
session k is the test set (two unseen speakers), the other four the training set.
"""

from __future__ import annotations

import re
from pathlib import Path

from paravox.data.corpora.corpus_kit import (
    Prepared,
    fold_manifests,
    missing,
    probe_audio,
    read_lines,
    walk_corpus,
)
from paravox.data.manifest import ManifestRow

URL = "https://sail.usc.edu/iemocap/"
EMOTIONS = {"neu": "neutral", "hap": "happy", "exc": "excited", "ang": "angry", "sad": "sad",
            "fru": "frustrated", "sur": "surprised", "fea": "fearful", "dis": "disgust",
            "oth": "other", "xxx": "undecided"}
FOUR_CLASS = {"neu": "neutral", "hap": "happy", "exc": "happy", "ang": "angry", "sad": "sad"}
SUMMARY = re.compile(r"^\[\s*([\d.]+)\s*-\s*([\d.]+)\s*\]\s+(Ses\d{2}[FM]_\S+)\s+(\w+)\s+"
                     r"\[\s*([\d.]+)\s*,\s*([\d.]+)\s*,\s*([\d.]+)\s*\]")
UTTERANCE = re.compile(r"^Ses(\d{2})[FM]_(impro|script)\S*_([FM])\d+$")
N_SESSIONS = 5


def read_evaluations(paths: list[Path], problems: list[str]) -> dict[str, dict]:
    """Utterance -> labels from the EmoEvaluation summary lines (other lines, the single
    annotators' ``C-E1:`` and ``A-E1:`` ratings, are skipped)."""
    out: dict[str, dict] = {}
    for path in paths:
        for lineno, line in read_lines(path):
            if not line.startswith("["):
                continue
            m = SUMMARY.match(line)
            if m is None:
                problems.append(f"{path}:{lineno}: not '[START - END] UTTERANCE EMOTION "
                                f"[V, A, D]'; this utterance gets no emotion labels")
                continue
            code = m.group(4).lower()
            labels = {"emotion": EMOTIONS.get(code, code)}
            if code in FOUR_CLASS:
                labels["emotion4"] = FOUR_CLASS[code]
            labels.update(valence=float(m.group(5)), arousal=float(m.group(6)),
                          dominance=float(m.group(7)))
            out[m.group(3)] = labels
    return out


def is_evaluation(path: Path) -> bool:
    """A dialog's summary file: ``dialog/EmoEvaluation/*.txt`` itself, not the per-annotator
    files in its ``Categorical``/``Attribute``/``Self-evaluation`` subfolders."""
    return path.parent.name == "EmoEvaluation" and path.parent.parent.name == "dialog"


def prepare_iemocap(src: Path, progress: bool = True, workers: int = 4,
                    check_audio: bool = True) -> Prepared:
    """See the module docstring."""
    files = walk_corpus(src, name_match=lambda n: n.startswith("Ses") and n.endswith(".txt"),
                        progress=progress, desc="iemocap: scanning")
    evaluations = sorted(p for ps in files.named.values() for p in ps if is_evaluation(p))
    if not evaluations:
        raise missing(src, "SessionN/dialog/EmoEvaluation/*.txt (the emotion labels)", URL,
                      "unpack IEMOCAP_full_release whole")
    out = Prepared()
    labels_of = read_evaluations(evaluations, out.problems)
    rows, seen = [], set()
    for path in files.audio:
        m = UTTERANCE.match(path.stem)
        if m is None or path.parent.parent.name != "wav" or "sentences" not in path.parts:
            continue  # dialog-level recordings (dialog/wav) and other audio are not rows
        session, kind, gender = int(m.group(1)), m.group(2), m.group(3).lower()
        seen.add(path.stem)
        labels = {"session": session, "gender": gender,
                  "dialog_type": "improvised" if kind == "impro" else "scripted"}
        if path.stem in labels_of:
            labels.update(labels_of[path.stem])
        else:
            out.problems.append(f"{path}: no line in its dialog's EmoEvaluation file; kept "
                                f"without emotion labels")
        rows.append(ManifestRow(id=path.stem, path=str(path.resolve()),
                                speaker=f"Ses{session:02d}{gender.upper()}", labels=labels))
    if not rows:
        raise missing(src, "SessionN/sentences/wav/DIALOG/*.wav (the utterance audio)", URL)
    unheard = sorted(set(labels_of) - seen)
    if unheard:
        out.problems.append(f"{src}: {len(unheard)} utterance(s) in EmoEvaluation files have "
                            f"no audio (first: {unheard[0]}); left out")
    if check_audio:
        rows = probe_audio(rows, out.problems, progress, workers, "iemocap: reading headers")
    out.manifests["all.jsonl"] = rows
    four = [r for r in rows if "emotion4" in r.labels]
    sessions = sorted({r.labels["session"] for r in four})
    if sessions != list(range(1, N_SESSIONS + 1)):
        out.notes.append(f"sessions found: {sessions}; leave-one-session-out folds are made "
                         f"for the sessions present")
    folds = fold_manifests(four, lambda r: sessions.index(r.labels["session"]),
                           len(sessions), name="session")
    # name each fold by the session it tests on, whatever sessions are present
    out.manifests.update({
        name.replace(f"session{i + 1}_", f"session{s}_"): fold_rows
        for i, s in enumerate(sessions)
        for name, fold_rows in folds.items() if name.startswith(f"folds/session{i + 1}_")})
    return out
