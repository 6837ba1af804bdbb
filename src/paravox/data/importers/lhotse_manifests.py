"""Lhotse manifests in, read directly so that the lhotse package is not needed: its JSONL(.gz)
recordings + supervisions pair, or a cuts file. Relative paths resolve, as in Lhotse, against
the current folder unless ``audio_root`` says otherwise.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from paravox.data.importers.foreign_rows import (
    cell_value,
    read_jsonl_objects,
    resolve_audio_path,
)
from paravox.data.manifest import ManifestRow, row_from_dict
from paravox.errors import ManifestError

log = logging.getLogger(__name__)


def _lhotse_kind(rec: dict[str, Any]) -> str:
    if "sources" in rec:
        return "recordings"
    if "recording_id" in rec:
        return "supervisions"
    if str(rec.get("type", "")).endswith("Cut") or "recording" in rec or "tracks" in rec:
        return "cuts"
    return "unknown"


def _sibling(path: Path, kind: str, other: str) -> Path | None:
    """Lhotse's naming (``corpus_recordings_train.jsonl.gz``): the other file of the pair."""
    if kind not in path.name:
        return None
    cand = path.with_name(path.name.replace(kind, other))
    return cand if cand.is_file() else None


def _lhotse_audio(rec: dict[str, Any], where: str, root: Path, notes: dict[str, int]) -> str:
    """The file holding channel 0 of a Lhotse recording (its ``file`` source)."""
    if rec.get("transforms"):
        raise ManifestError(f"{where}: recording '{rec.get('id')}' has transforms (speed or "
                            f"volume perturbation, resampling); import the unperturbed "
                            f"recordings")
    sources = rec.get("sources")
    if not isinstance(sources, list) or not sources:
        raise ManifestError(f"{where}: recording '{rec.get('id')}' has no 'sources'")

    def channels(s):
        c = s.get("channels", [0])
        return list(c) if isinstance(c, (list, tuple)) else [c]

    if not all(isinstance(s, dict) for s in sources):
        raise ManifestError(f"{where}: recording '{rec.get('id')}' has a source that is not "
                            f"an object")
    first = min(sources, key=lambda s: min(channels(s) or [1 << 30]))
    ch = channels(first)
    if first.get("type") != "file":
        raise ManifestError(f"{where}: recording '{rec.get('id')}' has a '{first.get('type')}' "
                            f"source; only 'file' sources can be imported (write the audio "
                            f"to files first)")
    if len(sources) > 1 or len(ch) > 1:
        notes["multichannel"] = notes.get("multichannel", 0) + 1
        if len(ch) > 1:
            notes["shared_file"] = notes.get("shared_file", 0) + 1
    if not isinstance(first.get("source"), str) or not first["source"]:
        raise ManifestError(f"{where}: recording '{rec.get('id')}' source has no file path")
    return resolve_audio_path(first["source"], root)


def _on_channel0(channel: Any) -> bool:
    if channel is None:
        return True
    chans = list(channel) if isinstance(channel, (list, tuple)) else [channel]
    return 0 in chans


def _sup_fields(sup: dict[str, Any]) -> dict[str, Any]:
    """speaker, language, text and labels (gender, custom fields) of a supervision."""
    out: dict[str, Any] = {k: sup[k] for k in ("speaker", "language", "text")
                           if cell_value(sup.get(k)) is not None}
    labels = {}
    if cell_value(sup.get("gender")) is not None:
        labels["gender"] = sup["gender"]
    if isinstance(sup.get("custom"), dict):
        labels.update(sup["custom"])
    if labels:
        out["labels"] = labels
    return out


def import_lhotse(path: str | Path, supervisions: str | Path | None = None,
                  audio_root: str | Path | None = None) -> list[ManifestRow]:
    """Manifest rows from Lhotse manifests (JSONL, gzipped or not), read directly so that the
    lhotse package is not needed.

    ``path`` is a cuts file, or a recordings file with its supervisions file (``supervisions``,
    else found by Lhotse's naming, ``*_recordings_*`` -> ``*_supervisions_*``; the two may be
    given in either order). With a recordings/supervisions pair each supervision is a row:
    its recording's ``file`` source is the path, ``start``/``duration`` the offset/duration,
    and ``speaker``, ``language``, ``text`` carry over (``gender`` and ``custom`` fields become
    labels); recordings without supervisions file are whole-recording rows. With cuts, each
    cut is a row (its ``start``/``duration`` inside the recording) and takes speaker and
    language from its supervisions where they agree, their texts joined in time order.

    Multi-channel recordings: paravox rows are mono, so the source that holds channel 0 is the
    path, and supervisions or cuts on other channels only are skipped
    (a warning counts them). Where channel 0 shares a file with other channels, paravox's
    reader averages that file's channels (a warning says so). Paths resolve, as in Lhotse,
    against the current folder unless ``audio_root`` is given. Sources other than files
    (``url``, ``command``, ``memory``), recordings with transforms (perturbation) and mixed
    or padding cuts are refused with the line named.
    """
    root = Path(audio_root) if audio_root is not None else Path.cwd()
    files: dict[str, tuple[Path, list[tuple[int, dict[str, Any]]]]] = {}
    for p in [Path(path)] + ([Path(supervisions)] if supervisions is not None else []):
        recs = read_jsonl_objects(p, "Lhotse manifest")
        kind = _lhotse_kind(recs[0][1]) if recs else "unknown"
        if kind == "unknown":
            raise ManifestError(f"{p}: not a Lhotse cuts, recordings or supervisions manifest "
                                f"(no 'sources', 'recording_id' or 'recording' in the rows)")
        if kind in files:
            raise ManifestError(f"{p}: two Lhotse {kind} files given ({files[kind][0]} and {p})")
        files[kind] = (p, recs)
    notes: dict[str, int] = {}
    if "cuts" in files:
        if len(files) > 1:
            raise ManifestError(f"{files['cuts'][0]} is a cuts file: give it alone")
        rows = _lhotse_cuts(*files["cuts"], root, notes)
    else:
        for kind, other in (("recordings", "supervisions"), ("supervisions", "recordings")):
            if kind in files and other not in files:
                sib = _sibling(files[kind][0], kind, other)
                if sib is not None:
                    files[other] = (sib, read_jsonl_objects(sib, "Lhotse manifest"))
        if "recordings" not in files:
            raise ManifestError(f"{files['supervisions'][0]}: Lhotse supervisions need their "
                                f"recordings file: `paravox manifest import lhotse "
                                f"RECORDINGS.jsonl.gz --supervisions {files['supervisions'][0]}`")
        rows = _lhotse_pair(files["recordings"], files.get("supervisions"), root, notes)
    if notes.get("skipped"):
        log.warning(f"{path}: skipped {notes['skipped']} Lhotse segment(s) on channels other "
                    f"than 0 (a row reads the file holding channel 0, as the mean of that "
                    f"file's channels when it holds several)")
    if notes.get("shared_file"):
        log.warning(f"{path}: {notes['shared_file']} recording(s) hold several channels in one "
                    f"file; paravox reads such files as the average of their channels")
    if notes.get("mixed_speakers"):
        log.warning(f"{path}: {notes['mixed_speakers']} cut(s) hold several speakers and get no "
                    f"speaker; cut them to supervisions in Lhotse first "
                    f"(trim_to_supervisions)")
    return rows


def _lhotse_pair(recordings, supervisions, root: Path, notes: dict[str, int]
                 ) -> list[ManifestRow]:
    rec_path, rec_rows = recordings
    audio: dict[str, str] = {}
    durations: dict[str, tuple[object, str]] = {}  # id -> (duration, where)
    for lineno, rec in rec_rows:
        where = f"{rec_path}:{lineno}"
        if _lhotse_kind(rec) != "recordings" or not rec.get("id"):
            raise ManifestError(f"{where}: not a Lhotse recording (needs 'id' and 'sources')")
        audio[str(rec["id"])] = _lhotse_audio(rec, where, root, notes)
        durations[str(rec["id"])] = (rec.get("duration"), where)
    if supervisions is None:
        return [row_from_dict({"id": rid, "path": p, "duration": durations[rid][0]},
                              durations[rid][1]) for rid, p in audio.items()]
    sup_path, sup_rows = supervisions
    rows = []
    for lineno, sup in sup_rows:
        where = f"{sup_path}:{lineno}"
        rid = sup.get("recording_id")
        if rid is None or str(rid) not in audio:
            raise ManifestError(f"{where}: recording '{rid}' is not in {rec_path}")
        if not _on_channel0(sup.get("channel")):
            notes["skipped"] = notes.get("skipped", 0) + 1
            continue
        d = {"id": sup.get("id"), "path": audio[str(rid)], "offset": sup.get("start", 0.0),
             "duration": sup.get("duration"), **_sup_fields(sup)}
        rows.append(row_from_dict(d, where))
    return rows


def _start(sup: dict[str, Any]) -> float:
    """A supervision's start, for ordering (one that is not a finite number sorts first;
    the row's own numbers are checked by ``row_from_dict``)."""
    try:
        x = float(sup.get("start") or 0.0)
    except (TypeError, ValueError, OverflowError):
        return 0.0
    return x if x == x else 0.0


def _lhotse_cuts(cut_path: Path, cut_rows, root: Path, notes: dict[str, int]
                 ) -> list[ManifestRow]:
    rows = []
    for lineno, cut in cut_rows:
        where = f"{cut_path}:{lineno}"
        kind = cut.get("type", "MonoCut")
        if kind in ("MixedCut", "PaddingCut") or "tracks" in cut:
            raise ManifestError(f"{where}: a Lhotse {kind} (mixed or padded audio) cannot be "
                                f"imported; import the cuts before mixing or padding")
        rec = cut.get("recording")
        if not isinstance(rec, dict):
            raise ManifestError(f"{where}: cut '{cut.get('id')}' has no recording (a "
                                f"features-only cut?); paravox needs the audio")
        if not _on_channel0(cut.get("channel")):
            notes["skipped"] = notes.get("skipped", 0) + 1
            continue
        d: dict[str, Any] = {"id": cut.get("id"), "path": _lhotse_audio(rec, where, root, notes),
                             "offset": cut.get("start", 0.0), "duration": cut.get("duration")}
        sups = sorted((s for s in cut.get("supervisions") or []
                       if isinstance(s, dict) and _on_channel0(s.get("channel"))),
                      key=_start)
        fields = [_sup_fields(s) for s in sups]
        for key in ("speaker", "language"):
            values = {f.get(key) for f in fields}
            if len(values) == 1 and None not in values:
                d[key] = values.pop()
            elif key == "speaker" and len(values - {None}) > 1:
                notes["mixed_speakers"] = notes.get("mixed_speakers", 0) + 1
        texts = [f["text"] for f in fields if isinstance(f.get("text"), str)]
        if texts:
            d["text"] = " ".join(texts)
        labels = dict(fields[0].get("labels", {})) if len(fields) == 1 else {}
        if isinstance(cut.get("custom"), dict):
            labels.update(cut["custom"])
        if labels:
            d["labels"] = labels
        rows.append(row_from_dict(d, where))
    return rows
