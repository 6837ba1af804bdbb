"""The RIR and noise set (OpenSLR 28, ``rirs_noises.zip``) as distributed: ``RIRS_NOISES/
simulated_rirs/{small,medium,large}room/RoomNNN/RoomNNN-NNNNN.wav``,
``real_rirs_isotropic_noises/*.wav`` with its ``rir_list`` and ``noise_list``, and
``pointsource_noises/*.wav`` with its ``noise_list``. The lists are Kaldi's
(``--rir-id ID --room-id ROOM FILE``, ``--noise-id ID --noise-type T --bg-fg-type B
[--room-linkage ROOM] FILE``): they alone say which real recording is an impulse response
and which an isotropic noise (the file names do not: the AIR responses hold no "rir").

Manifests: ``simulated_rirs.jsonl`` (labels ``room_type``, ``room``), ``real_rirs.jsonl``
(``room``), ``isotropic_noises.jsonl`` (``room``), ``pointsource_noises.jsonl``
(``bg_fg``). For augmentation, point ``augment.rir_dirs`` at ``simulated_rirs`` (the set the
speaker recipes use).
"""

from __future__ import annotations

import shlex
from pathlib import Path

from paravox.data.corpora.corpus_kit import Prepared, missing, probe_audio, read_lines, walk_corpus
from paravox.data.manifest import ManifestRow

URL = "https://www.openslr.org/28"
REAL = "real_rirs_isotropic_noises"
POINT = "pointsource_noises"
SIMULATED = "simulated_rirs"


def read_kaldi_list(path: Path, problems: list[str]) -> dict[str, dict[str, str]]:
    """File name -> its ``--option value`` pairs (keys without dashes) from a rir_list or
    noise_list; the file is the line's last word that ends in ``.wav``."""
    out = {}
    for lineno, line in read_lines(path):
        try:
            words = shlex.split(line)
        except ValueError:
            words = line.split()
        opts, i = {}, 0
        while i + 1 < len(words) and words[i].startswith("--"):
            opts[words[i][2:].replace("-", "_")] = words[i + 1]
            i += 2
        wavs = [w for w in words[i:] if w.endswith(".wav")]
        if not wavs:
            problems.append(f"{path}:{lineno}: names no .wav file; line skipped")
            continue
        out[Path(wavs[-1]).name] = opts
    return out


def list_rows(paths: list[Path], listed: dict[str, dict[str, str]], kind: str, room_key: str
              ) -> list[ManifestRow]:
    """Rows of the files a Kaldi list names, labelled with their room (or noise type)."""
    rows = []
    for path in paths:
        opts = listed.get(path.name)
        if opts is None:
            continue
        labels = {"kind": kind}
        if opts.get(room_key):
            labels["room"] = opts[room_key]
        if opts.get("bg_fg_type"):
            labels["bg_fg"] = opts["bg_fg_type"]
        rows.append(ManifestRow(id=path.stem, path=str(path.resolve()), labels=labels))
    return rows


def prepare_rirs_noises(src: Path, progress: bool = True, workers: int = 4,
                        check_audio: bool = True) -> Prepared:
    """See the module docstring."""
    files = walk_corpus(src, names=["rir_list", "noise_list"], progress=progress,
                        desc="rirs_noises: scanning")
    out = Prepared()
    parts: dict[str, list[Path]] = {}
    for path in files.audio:
        part = next((p for p in (SIMULATED, REAL, POINT) if p in path.parts), None)
        if part is None:
            out.problems.append(f"{path}: not under {SIMULATED}/, {REAL}/ or {POINT}/; "
                                f"left out")
        else:
            parts.setdefault(part, []).append(path)
    if not parts:
        raise missing(src, f"RIRS_NOISES audio ({SIMULATED}/, {REAL}/, {POINT}/)", URL,
                      "unpack rirs_noises.zip")
    manifests: dict[str, list[ManifestRow]] = {}
    sim = []
    for path in parts.get(SIMULATED, []):
        room_type, room = path.parent.parent.name, path.parent.name
        sim.append(ManifestRow(id=f"{room_type}-{path.stem}", path=str(path.resolve()),
                               labels={"kind": "rir", "room_type": room_type,
                                       "room": f"{room_type}-{room}"}))
    manifests["simulated_rirs.jsonl"] = sim

    def lists_in(part: str, name: str) -> dict[str, dict[str, str]]:
        found = [p for p in files.named.get(name, []) if part in p.parts]
        if parts.get(part) and not found:
            raise missing(src, f"{part}/{name} (which file is which)", URL,
                          "it comes in rirs_noises.zip")
        listed: dict[str, dict[str, str]] = {}
        for p in found:
            listed.update(read_kaldi_list(p, out.problems))
        return listed

    real = parts.get(REAL, [])
    rirs, noises = lists_in(REAL, "rir_list"), lists_in(REAL, "noise_list")
    manifests["real_rirs.jsonl"] = list_rows(real, rirs, "rir", "room_id")
    manifests["isotropic_noises.jsonl"] = list_rows(real, noises, "noise", "room_linkage")
    manifests["pointsource_noises.jsonl"] = list_rows(parts.get(POINT, []),
                                                      lists_in(POINT, "noise_list"),
                                                      "noise", "room_linkage")
    unlisted = [p for p in real if p.name not in rirs and p.name not in noises]
    for p in unlisted:
        out.problems.append(f"{p}: in neither {REAL}/rir_list nor noise_list; left out")
    for name, rows in manifests.items():
        if not rows:
            out.notes.append(f"no {name[:-6].replace('_', ' ')} in {src} (rirs_noises.zip from "
                             f"{URL})")
            continue
        if check_audio:
            rows = probe_audio(rows, out.problems, progress, workers,
                               f"rirs_noises {name[:-6]}: reading headers")
        out.manifests[name] = rows
    return out
