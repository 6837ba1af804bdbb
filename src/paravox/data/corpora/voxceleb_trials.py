"""The official VoxCeleb1 lists: the verification trial lists, converted to paravox's trials
format, and the identification split (``iden_split.txt``), turned into manifests.

The lists (``1|0 idNNNNN/VIDEO/NNNNN.wav idNNNNN/VIDEO/NNNNN.wav`` per line) are read where
the user put them in the corpus folder; each becomes ``trials/vox1_{o,e,h}[_cleaned].txt``
with the manifest's ids (the names without the extension), the format
:func:`paravox.evaluation.trials.read_trials` reads. A list with a malformed line, or one
that names utterances the corpus folder does not hold (VoxCeleb1-E and -H need the dev set
too), is not written: a part of an official list would give numbers no paper can be
compared with. The problem is named, and the other lists are still converted.
"""

from __future__ import annotations

from paravox.data.corpora.corpus_kit import CorpusFiles, Prepared, read_lines

# official file name -> (paravox file name, what it is)
TRIAL_LISTS = {
    "veri_test.txt": ("vox1_o.txt", "VoxCeleb1-O, original"),
    "veri_test2.txt": ("vox1_o_cleaned.txt", "VoxCeleb1-O, cleaned"),
    "list_test_all.txt": ("vox1_e.txt", "VoxCeleb1-E, original"),
    "list_test_all2.txt": ("vox1_e_cleaned.txt", "VoxCeleb1-E, cleaned"),
    "list_test_hard.txt": ("vox1_h.txt", "VoxCeleb1-H, original"),
    "list_test_hard2.txt": ("vox1_h_cleaned.txt", "VoxCeleb1-H, cleaned"),
}
AUDIO_EXTENSIONS = (".wav", ".m4a", ".flac")
IDEN_SPLIT = "iden_split.txt"
IDEN_PARTS = {"1": "train", "2": "val", "3": "test"}  # the identification split's codes


def trial_id(name: str) -> str:
    """``id10270/x6uYqmx31kE/00001.wav`` -> ``id10270/x6uYqmx31kE/00001``: the manifest id."""
    for ext in AUDIO_EXTENSIONS:
        if name.endswith(ext):
            return name[: -len(ext)]
    return name


def convert_trial_lists(files: CorpusFiles, ids: set[str], out: Prepared, url: str) -> None:
    """Convert every list of :data:`TRIAL_LISTS` found in ``files`` into ``out.texts``
    (``trials/NAME``), checking each utterance against ``ids``; the lists not found are named
    in one note with where to get them."""
    absent = [name for name in TRIAL_LISTS if files.first(name) is None]
    for name, (target, what) in TRIAL_LISTS.items():
        path = files.first(name)
        if path is None:
            continue
        lines, bad_line, unknown = [], None, []
        for lineno, line in read_lines(path):
            parts = line.split()
            if len(parts) != 3 or parts[0] not in ("0", "1"):
                bad_line = f"{path}:{lineno}: expected '1|0 idA/VIDEO/NNNNN.wav " \
                           f"idB/VIDEO/NNNNN.wav', got '{line[:80]}'"
                break
            a, b = trial_id(parts[1]), trial_id(parts[2])
            unknown += [(lineno, u) for u in (a, b) if u not in ids]
            lines.append(f"{parts[0]} {a} {b}")
        if bad_line is not None:
            out.problems.append(f"{bad_line}; {what} not converted (get the list again "
                                f"from {url}{name})")
            continue
        if unknown:
            names = sorted({u for _, u in unknown})
            speakers = sorted({u.split("/")[0] for u in names})
            out.problems.append(
                f"{path}: {len(names)} utterance(s) of {len(speakers)} speaker(s) are not in "
                f"the corpus (first: line {unknown[0][0]}, {unknown[0][1]}; speakers "
                f"{', '.join(speakers[:5])}{' ...' if len(speakers) > 5 else ''}); {what} not "
                f"converted: unpack the missing audio (the -E and -H lists need the dev set "
                f"too) and run the command again")
            continue
        if not lines:
            out.problems.append(f"{path}: no trials in the file; {what} not converted")
            continue
        out.texts[f"trials/{target}"] = "\n".join(lines) + "\n"
    if absent:
        out.notes.append(f"trial lists not found in {files.root}: {', '.join(absent)}; to "
                         f"evaluate on them, download them from {url} (e.g. {url}veri_test2.txt"
                         f" for VoxCeleb1-O cleaned) into the corpus folder and run the command "
                         f"again")


def identification_split(files: CorpusFiles, rows: list, out: Prepared, url: str) -> None:
    """``iden_train.jsonl``, ``iden_val.jsonl`` and ``iden_test.jsonl`` (speaker
    identification over all 1,251 speakers) from ``iden_split.txt`` (``1|2|3 NAME.wav`` per
    line), when it is in the corpus folder; written only when every line is good and every
    utterance is there, like the trial lists."""
    path = files.first(IDEN_SPLIT)
    if path is None:
        return
    by_id = {r.id: r for r in rows}
    parts: dict[str, list] = {name: [] for name in IDEN_PARTS.values()}
    unknown = []
    for lineno, line in read_lines(path):
        fields = line.split()
        if len(fields) != 2 or fields[0] not in IDEN_PARTS:
            out.problems.append(f"{path}:{lineno}: expected '1|2|3 idNNNNN/VIDEO/NNNNN.wav', "
                                f"got '{line[:80]}'; the identification split is not written "
                                f"(get it again from {url}{IDEN_SPLIT})")
            return
        row = by_id.get(trial_id(fields[1]))
        if row is None:
            unknown.append((lineno, trial_id(fields[1])))
        else:
            parts[IDEN_PARTS[fields[0]]].append(row)
    if unknown:
        out.problems.append(f"{path}: {len(unknown)} utterance(s) are not in the corpus (first: "
                            f"line {unknown[0][0]}, {unknown[0][1]}); the identification split "
                            f"is not written: it needs the dev and the test set")
        return
    for name, part in parts.items():
        out.manifests[f"iden_{name}.jsonl"] = part
