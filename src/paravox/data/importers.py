"""Importers from (and exporters to) other toolkits' manifests: Kaldi, CSV, NeMo, Lhotse,
SpeechBrain and Hugging Face audio folders. Every importer returns checked
:class:`~paravox.data.manifest.ManifestRow` s with absolute paths, and a bad input row raises
ManifestError naming ``file:line``, so one command turns an existing corpus description into
a paravox manifest.

Kaldi: ``wav.scp`` (id -> file), ``utt2spk``, optional ``segments`` (utt rec start end),
``text`` and ``utt2lang``. Piped ``wav.scp`` entries (``sox ... |``) are refused with the line
named: convert those recordings to files first.
CSV: a header row; ``id`` and ``path`` required; ``offset``, ``duration``, ``speaker``,
``language``, ``text`` recognised; every other column becomes a label. Other column names are
renamed with a map (``--map utt=id --map file=path --map spk=speaker``).
NeMo: JSON lines with ``audio_filepath``, ``duration``, optional ``offset``, ``text``.
Lhotse: its JSONL(.gz) recordings + supervisions pair, or a cuts file (no lhotse needed).
SpeechBrain: its CSV (``ID, duration, wav, spk_id, ...``) or JSON, ``$data_root`` filled in.
Hugging Face ``audiofolder``: audio files under a folder, optional ``metadata.csv|jsonl``.

Relative audio paths resolve as the source toolkit resolves them unless ``audio_root`` says
otherwise: Kaldi, Lhotse and SpeechBrain against the current folder, NeMo, CSV and audio
folders against the manifest's (or metadata file's) folder.
"""

from __future__ import annotations

import csv
import json
import logging
import re
from pathlib import Path
from typing import Any

from paravox.audio.io import audio_info
from paravox.data.manifest import ManifestRow, json_lines, row_from_dict
from paravox.errors import ManifestError, ParavoxError

log = logging.getLogger(__name__)

CSV_FIELDS = ("id", "path", "offset", "duration", "speaker", "language", "text")
# audio files a Hugging Face audio folder may hold (what `datasets` recognises, commonly)
AUDIO_EXTENSIONS = {".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".aac", ".aif", ".aiff",
                    ".au", ".sph", ".wma", ".webm"}
# folder names that the Hugging Face loader reads as splits
SPLITS = {"train", "training", "test", "testing", "eval", "evaluation", "validation", "valid",
          "dev"}


def _read_kv(path: Path, min_fields: int = 2) -> list[tuple[int, list[str]]]:
    out = []
    with path.open(encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            # key-value files keep the value whole (paths may hold spaces); others split fully
            parts = line.rstrip("\n").split(maxsplit=1 if min_fields == 2 else -1)
            if len(parts) < min_fields:
                raise ManifestError(f"{path}:{lineno}: expected at least {min_fields} fields, "
                                    f"got '{line.strip()}'")
            out.append((lineno, parts))
    return out


def _as_map(path: Path) -> dict[str, str]:
    return {p[0]: p[1].strip() for _, p in _read_kv(path)} if path.is_file() else {}


def import_kaldi(data_dir: str | Path, audio_root: str | Path | None = None) -> list[ManifestRow]:
    """Manifest rows from a Kaldi data directory (see the module docstring for the files).

    Relative paths in wav.scp resolve against ``audio_root`` (default: the current folder,
    as in Kaldi, where they are relative to the recipe directory)."""
    d = Path(data_dir)
    root = Path(audio_root) if audio_root is not None else Path.cwd()
    scp = d / "wav.scp"
    if not scp.is_file():
        raise ManifestError(f"{d}: no wav.scp; is this a Kaldi data directory?")
    recordings: dict[str, str] = {}
    for lineno, (key, value) in _read_kv(scp):
        value = value.strip()
        if value.endswith("|"):
            raise ManifestError(f"{scp}:{lineno}: piped entry '{value}' is not supported; "
                                f"write the audio to a file and list its path")
        path = Path(value)
        recordings[key] = str(path if path.is_absolute() else (root / path).resolve())
    utt2spk = _as_map(d / "utt2spk")
    text = _as_map(d / "text")
    utt2lang = _as_map(d / "utt2lang")
    rows: list[ManifestRow] = []
    segfile = d / "segments"
    if segfile.is_file():
        for lineno, parts in _read_kv(segfile, min_fields=4):
            if len(parts) > 4:
                raise ManifestError(f"{segfile}:{lineno}: a channel column is not supported; "
                                    f"split multi-channel recordings into mono files first")
            utt, rec, start, end = parts
            if rec not in recordings:
                raise ManifestError(f"{segfile}:{lineno}: recording '{rec}' not in wav.scp")
            try:
                t0, t1 = float(start), float(end)
            except ValueError:
                raise ManifestError(f"{segfile}:{lineno}: start/end must be seconds") from None
            if t1 == -1:  # Kaldi: -1 means "to the end of the recording"
                duration = None
            elif t1 <= t0:
                raise ManifestError(f"{segfile}:{lineno}: end {t1} <= start {t0}")
            else:
                duration = t1 - t0
            rows.append(_kaldi_row(utt, recordings[rec], t0, duration, utt2spk, text, utt2lang,
                                   f"{segfile}:{lineno}"))
    else:
        for utt, path in recordings.items():
            rows.append(_kaldi_row(utt, path, 0.0, None, utt2spk, text, utt2lang, str(scp)))
    if utt2spk:
        missing = [r.id for r in rows if r.speaker is None]
        if missing:
            raise ManifestError(f"{d / 'utt2spk'}: no speaker for {len(missing)} utterance(s), "
                                f"e.g. '{missing[0]}'")
    return rows


def _kaldi_row(utt, path, offset, duration, utt2spk, text, utt2lang, where) -> ManifestRow:
    return row_from_dict({"id": utt, "path": path, "offset": offset, "duration": duration,
                          "speaker": utt2spk.get(utt), "text": text.get(utt),
                          "language": utt2lang.get(utt)}, where)


def export_kaldi(rows: list[ManifestRow], data_dir: str | Path, root: Path | None = None) -> None:
    """Write wav.scp/utt2spk/spk2utt (+segments, text, utt2lang where present)."""
    d = Path(data_dir)
    rows = sorted(rows, key=lambda r: r.id)
    # a segments file only when some row is a part of its file; -1 ends "at the file's end"
    use_segments = any(r.offset or (r.duration is not None and abs(
        r.duration - audio_info(r.resolve(root)).duration) > 1e-3) for r in rows)
    d.mkdir(parents=True, exist_ok=True)
    rec_ids: dict[str, str] = {}
    with (d / "wav.scp").open("w") as scp:
        for r in rows:
            path = str(r.resolve(root))
            if use_segments:
                if path not in rec_ids:
                    rec_ids[path] = f"rec{len(rec_ids):06d}"
                    scp.write(f"{rec_ids[path]} {path}\n")
            else:
                scp.write(f"{r.id} {path}\n")
    if use_segments:
        with (d / "segments").open("w") as seg:
            for r in rows:
                end = "-1" if r.duration is None else f"{r.offset + r.duration:.3f}"
                seg.write(f"{r.id} {rec_ids[str(r.resolve(root))]} {r.offset:.3f} {end}\n")
    spk2utt: dict[str, list[str]] = {}
    with (d / "utt2spk").open("w") as u2s:
        for r in rows:
            spk = r.speaker if r.speaker is not None else r.id
            u2s.write(f"{r.id} {spk}\n")
            spk2utt.setdefault(spk, []).append(r.id)
    with (d / "spk2utt").open("w") as s2u:
        for spk in sorted(spk2utt):
            s2u.write(f"{spk} {' '.join(spk2utt[spk])}\n")
    if any(r.text for r in rows):
        with (d / "text").open("w") as t:
            for r in rows:
                t.write(f"{r.id} {r.text or ''}\n")
    if any(r.language for r in rows):
        with (d / "utt2lang").open("w") as t:
            for r in rows:
                t.write(f"{r.id} {r.language or 'unk'}\n")


def parse_delimiter(text: str) -> str:
    """The one-character CSV delimiter that ``text`` names: a literal backslash-t typed in a
    shell (``--delimiter '\t'``) or ``tab`` means a tab; ``comma``, ``semicolon``, ``pipe`` and
    ``space`` their characters. Anything else that is not one character is a ManifestError
    (one line for the command line, not a traceback from the csv module)."""
    names = {"\\t": "\t", "tab": "\t", "comma": ",", "semicolon": ";", "pipe": "|",
             "space": " "}
    d = names.get(text.lower(), text) if isinstance(text, str) else text
    if not isinstance(d, str) or len(d) != 1 or d in "\"\r\n" or d.isalnum():
        raise ManifestError(f"bad CSV delimiter {text!r}: give one character such as ',' or "
                            f"';', or '\\t' (or 'tab') for a tab")
    return d


def parse_map(items: list[str] | dict[str, str] | None) -> dict[str, str]:
    """``["utt=id", "spk=speaker"]`` (the ``--map`` options) as ``{column: field}``.

    A field is one of paravox's (``id, path, offset, duration, speaker, language, text``),
    ``labels.NAME`` (a label of another name) or ``-`` (drop the column); anything else is a
    ManifestError listing the choices, so a typo never silently loses a column."""
    if not items:
        return {}
    pairs = items.items() if isinstance(items, dict) else [_split_map(i) for i in items]
    out: dict[str, str] = {}
    for column, target in pairs:
        if target not in CSV_FIELDS and target != "-" and not (
                target.startswith("labels.") and len(target) > 7):
            raise ManifestError(f"--map {column}={target}: '{target}' is not a field; use one "
                                f"of {list(CSV_FIELDS)}, labels.NAME or - (drop the column)")
        out[column] = target
    return out


def _split_map(item: str) -> tuple[str, str]:
    column, sep, target = item.partition("=")
    if not sep or not column.strip() or not target.strip():
        raise ManifestError(f"--map '{item}': expected COLUMN=FIELD, e.g. --map utt=id")
    return column.strip(), target.strip()


def _renamed(header: list[str], mapping: dict[str, str], where: str) -> dict[str, str]:
    """Column -> field for every column of ``header`` (unmapped columns keep their name);
    a mapped column that is not in the header, or two columns landing on one field, fail."""
    absent = [c for c in mapping if c not in header]
    if absent:
        raise ManifestError(f"{where}: --map names column(s) {absent} that are not in the "
                            f"header {header}")
    names = {c: mapping.get(c, c) for c in header}
    seen: dict[str, str] = {}
    for c, f in names.items():
        if f == "-":
            continue
        if f in seen:
            raise ManifestError(f"{where}: columns '{seen[f]}' and '{c}' both give '{f}'; drop "
                                f"one with --map {c}=-")
        seen[f] = c
    return names


def _resolve(path: str, root: Path) -> str:
    p = Path(path).expanduser()
    return str(p if p.is_absolute() else (root / p).resolve())


def _cell(v: Any) -> Any:
    """An empty CSV cell (or JSON null) is an absent value."""
    return None if v in ("", None) else v


def import_csv(path: str | Path, delimiter: str = ",",
               mapping: list[str] | dict[str, str] | None = None) -> list[ManifestRow]:
    """Manifest rows from a CSV (or, with ``delimiter="\\t"``, TSV) file with a header row.

    Columns as in the module docstring; ``mapping`` (``{"utt": "id"}`` or ``["utt=id"]``, see
    :func:`parse_map`) renames other files' columns. Relative paths resolve against the CSV's
    folder and empty cells count as absent. A bad row raises ManifestError naming
    ``file:line``.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"CSV file not found: {path}")
    delimiter = parse_delimiter(delimiter)
    mapping = parse_map(mapping)
    rows = []
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, delimiter=delimiter)
        header = list(reader.fieldnames or [])
        names = _renamed(header, mapping, str(path))
        if not {"id", "path"} <= set(names.values()):
            cells = set(re.split(r"[,;\t|]", delimiter.join(header)))
            hint = ("; it looks like a SpeechBrain CSV: use `paravox manifest import "
                    "speechbrain`" if {"ID", "wav"} <= cells else
                    "; name them with --map COLUMN=id --map COLUMN=path")
            if len(header) == 1 and delimiter != "\t" and "\t" in header[0]:
                hint = "; the file is tab-separated: add --delimiter '\\t'"
            raise ManifestError(f"{path}: header must name at least 'id' and 'path' columns "
                                f"(found {header}){hint}")
        for lineno, rec in enumerate(reader, 2):
            if None in rec:
                raise ManifestError(f"{path}:{lineno}: more fields than header columns")
            d: dict[str, Any] = {}
            labels: dict[str, Any] = {}
            for column, value in rec.items():
                field, value = names[column], _cell(value)
                if field == "-" or value is None:
                    continue
                if field in CSV_FIELDS:
                    d[field] = value
                else:
                    labels[field.removeprefix("labels.")] = value
            if labels:
                d["labels"] = labels
            if d.get("path"):
                d["path"] = _resolve(d["path"], path.parent)
            rows.append(row_from_dict(d, f"{path}:{lineno}"))
    return rows


def _read_jsonl(path: Path, what: str) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) for every non-blank line of a JSONL(.gz) file."""
    if not path.is_file():
        raise ManifestError(f"{what} not found: {path}")
    out = []
    for lineno, d in json_lines(path, lambda line: f"; a {what} is one JSON object per line"):
        if not isinstance(d, dict):
            raise ManifestError(f"{path}:{lineno}: row is not a JSON object")
        out.append((lineno, d))
    return out


def _first(d: dict[str, Any], keys: tuple[str, ...]) -> tuple[str | None, Any]:
    """The first of ``keys`` that ``d`` holds a value for, and that value."""
    for k in keys:
        if _cell(d.get(k)) is not None:
            return k, d[k]
    return None, None


def _unique_ids(rows: list[dict[str, Any]], lines: list[int]) -> None:
    """Give rows without an ``id`` one from the audio file's name: the stem where it is
    unique, else stem + segment start/end in ms, else that + the manifest line number."""
    def seg(d):
        off = float(d.get("offset") or 0)
        end = "end" if d.get("duration") is None else f"{round(1000 * (off + d['duration'])):d}"
        return f"{Path(d['path']).stem}_{round(1000 * off):d}-{end}"

    todo = [(d, n) for d, n in zip(rows, lines) if d.get("id") is None]
    stems: dict[str, int] = {}
    for d, _ in todo:
        stems[Path(d["path"]).stem] = stems.get(Path(d["path"]).stem, 0) + 1
    segs: dict[str, int] = {}
    for d, _ in todo:
        if stems[Path(d["path"]).stem] > 1:
            segs[seg(d)] = segs.get(seg(d), 0) + 1
    for d, lineno in todo:
        if stems[Path(d["path"]).stem] == 1:
            d["id"] = Path(d["path"]).stem
        elif segs[seg(d)] == 1:
            d["id"] = seg(d)
        else:
            d["id"] = f"{seg(d)}-L{lineno}"


NEMO_FIELDS = {"audio_filepath": "path", "offset": "offset", "duration": "duration",
               "text": "text", "id": "id", "utt_id": "id", "utterance_id": "id"}
SPEAKER_KEYS = ("speaker", "speaker_id", "spk", "spk_id")
LANGUAGE_KEYS = ("language", "lang", "locale")


def import_nemo(path: str | Path, audio_root: str | Path | None = None,
                mapping: list[str] | dict[str, str] | None = None) -> list[ManifestRow]:
    """Manifest rows from a NeMo manifest (JSON lines: ``audio_filepath``, ``duration``,
    optional ``offset`` and ``text``), so NeMo corpora need no conversion script.

    ``speaker``/``speaker_id``/``spk`` become the speaker, ``lang``/``language``/``locale`` the
    language, every other field a label (NeMo's speaker-recognition manifests keep the speaker
    in ``label``: pass ``mapping={"label": "speaker"}``, i.e. ``--map label=speaker``). Ids come
    from an ``id`` field, else the audio file's name (plus the segment when a file holds
    several). Relative paths resolve, as in NeMo, against the manifest's folder unless
    ``audio_root`` is given.
    """
    path = Path(path)
    root = Path(audio_root) if audio_root is not None else path.parent
    mapping = parse_map(mapping)
    pending: list[tuple[str, dict[str, Any]]] = []
    for lineno, rec in _read_jsonl(path, "NeMo manifest"):
        where = f"{path}:{lineno}"
        if "audio_filepath" not in rec and "audio_filepath" not in mapping and \
                "path" not in mapping.values():
            raise ManifestError(f"{where}: no 'audio_filepath'; is this a NeMo manifest?")
        d: dict[str, Any] = {}
        labels: dict[str, Any] = {}
        rest = {}
        for k, v in rec.items():
            target = mapping.get(k) or NEMO_FIELDS.get(k)
            if target == "-" or _cell(v) is None:
                continue
            if target is None:
                rest[k] = v
            elif target.startswith("labels."):
                labels[target[7:]] = v
            else:
                d[target] = v
        if "speaker" not in d:
            key, value = _first(rest, SPEAKER_KEYS)
            if key:
                d["speaker"] = rest.pop(key)
        if "language" not in d:
            key, value = _first(rest, LANGUAGE_KEYS)
            if key:
                d["language"] = rest.pop(key)
        labels.update(rest)
        if labels:
            d["labels"] = labels
        if not isinstance(d.get("path"), str) or not d["path"]:
            raise ManifestError(f"{where}: 'audio_filepath' must be a file path")
        d["path"] = _resolve(d["path"], root)
        try:
            if d.get("duration") is not None:
                d["duration"] = float(d["duration"])
            d["offset"] = float(d.get("offset") or 0.0)
        except (TypeError, ValueError):
            raise ManifestError(f"{where}: offset/duration must be numbers of seconds") from None
        pending.append((where, d))
    _unique_ids([d for _, d in pending], [int(w.rsplit(":", 1)[1]) for w, _ in pending])
    return [row_from_dict(d, where) for where, d in pending]


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
    return _resolve(first["source"], root)


def _on_channel0(channel: Any) -> bool:
    if channel is None:
        return True
    chans = list(channel) if isinstance(channel, (list, tuple)) else [channel]
    return 0 in chans


def _sup_fields(sup: dict[str, Any]) -> dict[str, Any]:
    """speaker, language, text and labels (gender, custom fields) of a supervision."""
    out: dict[str, Any] = {k: sup[k] for k in ("speaker", "language", "text")
                           if _cell(sup.get(k)) is not None}
    labels = {}
    if _cell(sup.get("gender")) is not None:
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

    Multi-channel recordings: paravox rows are mono, so channel 0 is taken: the source that
    holds channel 0 is the path, and supervisions or cuts on other channels only are skipped
    (a warning counts them). Where channel 0 shares a file with other channels, paravox's
    reader averages that file's channels (a warning says so). Paths resolve, as in Lhotse,
    against the current folder unless ``audio_root`` is given. Sources other than files
    (``url``, ``command``, ``memory``), recordings with transforms (perturbation) and mixed
    or padding cuts are refused with the line named.
    """
    root = Path(audio_root) if audio_root is not None else Path.cwd()
    files: dict[str, tuple[Path, list[tuple[int, dict[str, Any]]]]] = {}
    for p in [Path(path)] + ([Path(supervisions)] if supervisions is not None else []):
        recs = _read_jsonl(p, "Lhotse manifest")
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
                    files[other] = (sib, _read_jsonl(sib, "Lhotse manifest"))
        if "recordings" not in files:
            raise ManifestError(f"{files['supervisions'][0]}: Lhotse supervisions need their "
                                f"recordings file: `paravox manifest import lhotse "
                                f"RECORDINGS.jsonl.gz --supervisions {files['supervisions'][0]}`")
        rows = _lhotse_pair(files["recordings"], files.get("supervisions"), root, notes)
    if notes.get("skipped"):
        log.warning(f"{path}: skipped {notes['skipped']} Lhotse segment(s) on channels other "
                    f"than 0 (paravox takes channel 0 of multi-channel recordings)")
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
    durations: dict[str, float | None] = {}
    for lineno, rec in rec_rows:
        where = f"{rec_path}:{lineno}"
        if _lhotse_kind(rec) != "recordings" or not rec.get("id"):
            raise ManifestError(f"{where}: not a Lhotse recording (needs 'id' and 'sources')")
        audio[str(rec["id"])] = _lhotse_audio(rec, where, root, notes)
        durations[str(rec["id"])] = rec.get("duration")
    if supervisions is None:
        return [row_from_dict({"id": rid, "path": p, "duration": durations[rid]},
                              f"{rec_path}") for rid, p in audio.items()]
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
                      key=lambda s: float(s.get("start") or 0.0))
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


SB_PLACEHOLDER = re.compile(r"\$([\w.]+)")
SB_AUDIO = ("wav", "file_path", "path", "audio", "flac")
SB_TEXT = ("wrd", "words", "text", "transcript", "trn")


def import_speechbrain(path: str | Path, data_root: str | Path | None = None,
                       audio_root: str | Path | None = None,
                       replacements: dict[str, str] | None = None) -> list[ManifestRow]:
    """Manifest rows from a SpeechBrain data manifest, so recipes' CSVs are usable as they are.

    CSV (``ID, duration, wav, spk_id`` and optional columns) or JSON (``{id: {"wav": ...,
    "length"|"duration": ..., ...}}``). ``$data_root`` (and any ``$name`` in ``replacements``)
    is substituted in every value as SpeechBrain does; a placeholder with no value is an error
    naming the line. ``spk_id`` is the speaker, ``wrd`` (or ``words``/``text``) the text,
    ``language``/``lang`` the language; ``start``/``stop`` columns (VoxCeleb recipes: sample
    indices) become offset/duration, read against the file's sample rate; every other column
    is a label. Relative paths resolve, as in SpeechBrain, against the current folder unless
    ``audio_root`` is given.
    """
    path = Path(path)
    if not path.is_file():
        raise ManifestError(f"SpeechBrain manifest not found: {path}")
    root = Path(audio_root) if audio_root is not None else Path.cwd()
    subs = {k: str(v) for k, v in (replacements or {}).items()}
    if data_root is not None:
        subs["data_root"] = str(data_root)
    with path.open(encoding="utf-8-sig") as fh:
        head = fh.read(1024).lstrip()
    entries = _sb_json(path) if head.startswith("{") else _sb_csv(path)
    rates: dict[str, int] = {}
    rows = []
    for where, rec in entries:
        rec = {k: _sb_substitute(v, subs, where, k) for k, v in rec.items()}
        rows.append(_sb_row(rec, where, root, rates))
    return rows


def _sb_csv(path: Path) -> list[tuple[str, dict[str, Any]]]:
    with path.open(newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh, skipinitialspace=True)
        header = list(reader.fieldnames or [])
        if "ID" not in header or not set(SB_AUDIO) & set(header):
            raise ManifestError(f"{path}: a SpeechBrain CSV needs an 'ID' and a 'wav' column "
                                f"(found {header})")
        out = []
        for lineno, rec in enumerate(reader, 2):
            if None in rec:
                raise ManifestError(f"{path}:{lineno}: more fields than header columns")
            out.append((f"{path}:{lineno}", {k: _cell(v) for k, v in rec.items()}))
    return out


def _sb_json(path: Path) -> list[tuple[str, dict[str, Any]]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as exc:
        raise ManifestError(f"{path}:{exc.lineno}: not valid JSON ({exc.msg})") from None
    if not isinstance(data, dict) or not all(isinstance(v, dict) for v in data.values()):
        raise ManifestError(f"{path}: a SpeechBrain JSON manifest is one object of "
                            f"id -> {{'wav': ..., ...}}")
    return [(f"{path}: entry '{k}'", {"ID": k, **v}) for k, v in data.items()]


def _sb_substitute(value: Any, subs: dict[str, str], where: str, column: str) -> Any:
    if not isinstance(value, str) or "$" not in value:
        return value

    def sub(m):
        if m.group(1) not in subs:
            flag = "--data-root DIR" if m.group(1) == "data_root" else "a value for it"
            raise ManifestError(f"{where}: column '{column}' holds '${m.group(1)}' and no "
                                f"value was given for it; pass {flag}")
        return subs[m.group(1)]

    return SB_PLACEHOLDER.sub(sub, value)


def _sb_row(rec: dict[str, Any], where: str, root: Path, rates: dict[str, int]) -> ManifestRow:
    audio_key, audio = _first(rec, SB_AUDIO)
    if audio_key is None:
        raise ManifestError(f"{where}: no audio path ('wav' column is empty)")
    d: dict[str, Any] = {"id": rec.get("ID"), "path": _resolve(str(audio), root)}
    used = {"ID", audio_key, "duration", "length", "start", "stop"}
    dur = _cell(rec.get("duration", rec.get("length")))
    if rec.get("start") is not None or rec.get("stop") is not None:
        try:
            start = int(float(rec.get("start") or 0))
            stop = None if rec.get("stop") is None else int(float(rec["stop"]))
        except (TypeError, ValueError):
            raise ManifestError(f"{where}: start/stop must be sample indices") from None
        if d["path"] not in rates:
            try:
                rates[d["path"]] = audio_info(d["path"]).sample_rate
            except ParavoxError as exc:
                raise ManifestError(f"{where}: start/stop are in samples, so the audio's rate "
                                    f"is needed, but: {exc}") from None
        sr = rates[d["path"]]
        d["offset"] = start / sr
        dur = None if stop is None else (stop - start) / sr
    d["duration"] = dur
    for target, keys in (("speaker", ("spk_id", *SPEAKER_KEYS)), ("text", SB_TEXT),
                         ("language", LANGUAGE_KEYS)):
        key, value = _first(rec, keys)
        if key is not None:
            d[target] = value
            used.add(key)
    labels = {k: v for k, v in rec.items() if k not in used and _cell(v) is not None}
    if labels:
        d["labels"] = labels
    return row_from_dict(d, where)


SPEAKER_COLUMNS = ("speaker", "speaker_id", "spk")
TEXT_COLUMNS = ("text", "transcription", "sentence")


def import_hf_audiofolder(folder: str | Path) -> list[ManifestRow]:
    """Manifest rows from a Hugging Face ``audiofolder`` dataset on disk, laid out as
    ``datasets.load_dataset("audiofolder", data_dir=...)`` reads it, without ``datasets``.

    With ``metadata.csv`` or ``metadata.jsonl`` files (anywhere under ``folder``), each of
    their rows is a row: ``file_name`` (relative to the metadata file) is the path, a
    ``speaker``/``speaker_id``/``spk`` column the speaker, ``text``/``transcription``/
    ``sentence`` the text, ``language`` the language, every other column a label; audio files
    that no metadata row names are left out (one warning counts them). Without metadata every
    audio file is a row, and, as in ``datasets``, the folder name is ``labels["label"]`` when
    all files sit one folder deep in two or more folders. A top-level split folder (``train``,
    ``test``, ``validation``...) is recorded as ``labels["split"]``. Ids are an ``id`` column,
    else the file's path under ``folder`` without its extension.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise ManifestError(f"{folder}: not a folder; an audio folder is a directory of audio "
                            f"files (with an optional metadata.csv or metadata.jsonl)")
    audio = sorted(p for p in folder.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS
                   and p.is_file() and not any(part.startswith(".") for part in
                                               p.relative_to(folder).parts))
    metas = sorted(p for p in folder.rglob("metadata.*")
                   if p.name in ("metadata.csv", "metadata.jsonl") and p.is_file())
    dirs = [m.parent for m in metas]
    dup = sorted({str(d) for d in dirs if dirs.count(d) > 1})
    if dup:
        raise ManifestError(f"{dup[0]}: both metadata.csv and metadata.jsonl; keep one")
    if not metas:
        if not audio:
            raise ManifestError(f"{folder}: no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})"
                                f" and no metadata.csv/metadata.jsonl")
        return _hf_plain(folder, audio)
    rows: list[ManifestRow] = []
    listed: set[Path] = set()
    for meta in metas:
        for where, rec in _hf_metadata(meta):
            rows.append(_hf_row(folder, meta, rec, where, listed))
    unlisted = [p for p in audio if p.resolve() not in listed]
    if unlisted:
        log.warning(f"{folder}: {len(unlisted)} audio file(s) are in no metadata file and are "
                    f"left out, e.g. {unlisted[0]}")
    return rows


def _split_of(rel: Path) -> str | None:
    return rel.parts[0] if len(rel.parts) > 1 and rel.parts[0].lower() in SPLITS else None


def _hf_plain(folder: Path, audio: list[Path]) -> list[ManifestRow]:
    rels = [p.relative_to(folder) for p in audio]
    inner = [r.parts[1:] if _split_of(r) else r.parts for r in rels]
    classes = {parts[-2] for parts in inner if len(parts) > 1}
    add_label = len(classes) > 1 and len({len(parts) for parts in inner}) == 1
    rows = []
    for p, rel, parts in zip(audio, rels, inner):
        labels = {}
        if _split_of(rel):
            labels["split"] = _split_of(rel)
        if add_label:
            labels["label"] = parts[-2]
        rows.append(row_from_dict({"id": rel.with_suffix("").as_posix(),
                                   "path": str(p.resolve()), "labels": labels}, str(p)))
    return rows


def _hf_metadata(meta: Path) -> list[tuple[str, dict[str, Any]]]:
    if meta.suffix == ".jsonl":
        return [(f"{meta}:{n}", rec) for n, rec in _read_jsonl(meta, "metadata file")]
    out = []
    with meta.open(newline="", encoding="utf-8-sig") as fh:
        for lineno, rec in enumerate(csv.DictReader(fh), 2):
            if None in rec:
                raise ManifestError(f"{meta}:{lineno}: more fields than header columns")
            out.append((f"{meta}:{lineno}", {k: _cell(v) for k, v in rec.items()}))
    return out


def _hf_row(folder: Path, meta: Path, rec: dict[str, Any], where: str,
            listed: set[Path]) -> ManifestRow:
    name_cols = [k for k in rec if k == "file_name" or k.endswith("_file_name")]
    if len(name_cols) != 1 or _cell(rec[name_cols[0]]) is None:
        raise ManifestError(f"{where}: a metadata row needs one 'file_name' naming its audio "
                            f"file (found columns {sorted(rec)})")
    audio = (meta.parent / str(rec[name_cols[0]])).resolve()
    if not audio.is_file():
        raise ManifestError(f"{where}: file_name '{rec[name_cols[0]]}' is not a file under "
                            f"{meta.parent}")
    listed.add(audio)
    try:
        rel = audio.relative_to(folder.resolve())
    except ValueError:
        rel = Path(audio.name)
    d: dict[str, Any] = {"id": rec.get("id") or rel.with_suffix("").as_posix(),
                         "path": str(audio)}
    used = {name_cols[0], "id"}
    for target, keys in (("speaker", SPEAKER_COLUMNS), ("text", TEXT_COLUMNS),
                         ("language", ("language",))):
        key, value = _first(rec, keys)
        if key is not None:
            d[target] = value
            used.add(key)
    labels = {k: v for k, v in rec.items() if k not in used and _cell(v) is not None}
    split = _split_of(meta.parent.resolve().relative_to(folder.resolve()) / "x")
    if split and "split" not in labels:
        labels["split"] = split
    if labels:
        d["labels"] = labels
    return row_from_dict(d, where)


def export_csv(rows: list[ManifestRow], path: str | Path, root: Path | None = None) -> None:
    """Write ``rows`` as a CSV that :func:`import_csv` reads back: the standard columns, then
    one column per label key. Paths are resolved against ``root`` (the manifest's folder)."""
    label_keys = sorted({k for r in rows for k in r.labels})
    with Path(path).open("w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow([*CSV_FIELDS, *label_keys])
        for r in rows:
            w.writerow([r.id, str(r.resolve(root)), r.offset if r.offset else "",
                        "" if r.duration is None else r.duration, r.speaker or "",
                        r.language or "", r.text or "",
                        *[r.labels.get(k, "") for k in label_keys]])
