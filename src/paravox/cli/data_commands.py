"""Data commands: ``synth``, ``prepare``, ``manifest import|export|validate|stats``,
``preview``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from paravox.cli.common import check_args, plural
from paravox.data import importers
from paravox.data.corpora import PREPARERS, prepare_corpus
from paravox.data.importers import export_csv, export_kaldi
from paravox.data.manifest import Manifest, write_manifest
from paravox.data.stats import format_stats, manifest_stats
from paravox.data.synth import PRESETS, SynthConfig, generate_corpus
from paravox.data.validate import ERROR, validate_manifest
from paravox.errors import ManifestError
from paravox.report.preview import preview_utterance
from paravox.utils.atomic_files import check_writable
from paravox.utils.config import build_config
from paravox.utils.output_paths import check_not_among, check_not_input, check_not_inputs


def cmd_synth(args) -> int:
    """``paravox synth -o OUT``: the built-in synthetic corpus."""
    cfg = build_config(SynthConfig, base=PRESETS[args.preset], yaml_path=args.config,
                       overrides=args.overrides)
    s = generate_corpus(cfg, args.output, progress=not args.quiet, overwrite=args.overwrite,
                        reuse=args.reuse)
    if s.get("reused"):
        print(f"reusing {args.output}: same config, {plural(s['utterances'], 'utterance')}, "
              f"{s['hours']:.2f} h (use --overwrite to regenerate)")
        return 0
    print(f"wrote {args.output}: {plural(s['speakers'], 'speaker')}, "
          f"{plural(s['utterances'], 'utterance')}, {s['hours']:.2f} h, "
          f"{plural(s['trials'], 'trial')}, {plural(s['phones'], 'phone label')} "
          f"in {s['wall_seconds']:.1f} s ({s['hours'] * 3600 / s['wall_seconds']:.0f}x real time)")
    return 0


MAX_PROBLEMS_SHOWN = 20


def cmd_prepare(args) -> int:
    """``paravox prepare CORPUS SRC -o OUT``: manifests (and trial lists) of a standard corpus;
    exit 1 when some items were bad (each is named; the good ones are written)."""
    check_args(args)
    r = prepare_corpus(args.corpus, args.source, args.output, progress=not args.quiet,
                       workers=args.workers, check_audio=not args.no_audio_check,
                       to_wav=args.to_wav)
    out = Path(args.output)
    for name, s in r["manifests"].items():
        hours = f", {s['hours']:.2f} h" if s["hours"] else ""
        speakers = f", {plural(s['speakers'], 'speaker')}" if s["speakers"] else ""
        print(f"wrote {out / name}: {plural(s['rows'], 'row')}{hours}{speakers}")
    for name, n in r["trials"].items():
        print(f"wrote {out / name}: {plural(n, 'trial')}")
    for note in r["notes"]:
        print(f"note: {note}")
    problems = r["problems"]
    for line in problems[:MAX_PROBLEMS_SHOWN]:
        print(f"problem: {line}", file=sys.stderr)
    if problems:
        more = (f" ({len(problems) - MAX_PROBLEMS_SHOWN} more not shown)"
                if len(problems) > MAX_PROBLEMS_SHOWN else "")
        print(f"{plural(len(problems), 'problem')}{more}, all listed in "
              f"{out / 'prepare_report.json'}; the good items were written", file=sys.stderr)
        return 1
    return 0


IMPORT_FORMATS = ("kaldi", "csv", "nemo", "lhotse", "speechbrain", "hf-audiofolder")
# the files of a Kaldi data directory (those the importer reads and those beside them)
KALDI_FILES = ("wav.scp", "segments", "utt2spk", "spk2utt", "text", "utt2lang", "utt2dur",
               "reco2dur", "spk2gender", "utt2gender", "feats.scp", "cmvn.scp")
KALDI_EXPORT = ("wav.scp", "segments", "utt2spk", "spk2utt", "text", "utt2lang")


def import_inputs(args) -> list[tuple[str, object]]:
    """The files ``manifest import`` reads besides the audio: the source (a Kaldi data
    directory's files, an audio folder's metadata files) and a Lhotse supervisions file."""
    src = Path(args.source)
    if args.format == "kaldi" and src.is_dir():
        found = [(f"Kaldi file {name}", src / name) for name in KALDI_FILES]
    elif args.format == "hf-audiofolder" and src.is_dir():
        found = [("metadata file", p) for p in src.rglob("metadata.*")
                 if p.name in ("metadata.csv", "metadata.jsonl")]
    else:
        found = [("source", src)]
    return found + [("--supervisions file", getattr(args, "supervisions", None))]

# which import options each format reads; any other given is an error, not silently ignored
IMPORT_OPTIONS = {"audio_root": ("kaldi", "nemo", "lhotse", "speechbrain"),
                  "delimiter": ("csv",), "map": ("csv", "nemo"),
                  "data_root": ("speechbrain",), "supervisions": ("lhotse",)}


def cmd_manifest_import(args) -> int:
    """``paravox manifest import kaldi|csv|nemo|lhotse|speechbrain|hf-audiofolder SRC -o M``."""
    for option, formats in IMPORT_OPTIONS.items():
        if getattr(args, option, None) is not None and args.format not in formats:
            flag = "--" + option.replace("_", "-")
            raise ManifestError(f"{flag} applies to {', '.join(formats)} imports, not "
                                f"{args.format}")
    check_not_input(args.output, import_inputs(args), "-o")  # before reading anything
    check_writable(Path(args.output).parent, "-o folder")
    if args.format == "kaldi":
        rows = importers.import_kaldi(args.source, audio_root=args.audio_root)
    elif args.format == "csv":
        rows = importers.import_csv(args.source, delimiter=args.delimiter or ",",
                                    mapping=args.map)
    elif args.format == "nemo":
        rows = importers.import_nemo(args.source, audio_root=args.audio_root, mapping=args.map)
    elif args.format == "lhotse":
        rows = importers.import_lhotse(args.source, supervisions=args.supervisions,
                                       audio_root=args.audio_root)
    elif args.format == "speechbrain":
        rows = importers.import_speechbrain(args.source, data_root=args.data_root,
                                            audio_root=args.audio_root)
    else:
        rows = importers.import_hf_audiofolder(args.source)
    if not rows:
        raise ManifestError(f"{args.source}: no rows to import")
    check_not_among(args.output, (r.path for r in rows), "audio files", "-o")
    write_manifest(rows, args.output)
    print(f"wrote {plural(len(rows), 'row')} to {args.output}; run `paravox manifest validate "
          f"{args.output}` to check the audio")
    return 0


def cmd_manifest_export(args) -> int:
    """``paravox manifest export kaldi|csv M -o OUT``."""
    out = Path(args.output)
    check_not_inputs([out / n for n in KALDI_EXPORT] if args.format == "kaldi" else [out],
                     [("manifest", args.manifest)], "-o")
    check_writable(out if args.format == "kaldi" else out.parent,
                   "-o" if args.format == "kaldi" else "-o folder")
    m = Manifest.load(args.manifest)
    if args.format == "kaldi":
        export_kaldi(m.rows, args.output, root=m.root)
    else:
        export_csv(m.rows, args.output, root=m.root)
    print(f"wrote {plural(len(m), 'row')} to {args.output}")
    return 0


def cmd_manifest_validate(args) -> int:
    """``paravox manifest validate M [--json] [--fix OUT]``: report every problem (grouped, or
    as a JSON list), optionally write the usable rows to OUT; exit 1 when any row has an error
    (warnings and notes alone exit 0), so scripts can stop before training on a broken corpus."""
    check_args(args)
    if args.fix:  # before minutes of reading audio, not after
        check_not_input(args.fix, [("manifest", args.manifest)], "--fix")
        check_writable(Path(args.fix).parent, "--fix folder")
    report = validate_manifest(args.manifest, progress=not (args.quiet or args.json),
                               min_seconds=args.min_seconds)
    if args.json:
        print(json.dumps(report.to_json(), indent=2, ensure_ascii=False))
    else:
        print(report.summary(max_listed=args.max_listed))
    if args.fix:
        kept, dropped = report.write_usable(args.fix)
        stream = sys.stderr if args.json else sys.stdout
        print(f"wrote {kept} usable row(s) to {args.fix}; dropped {dropped} line(s) with errors",
              file=stream)
        # errors of no one line (a cut-off file, no rows) are not fixed by dropping lines
        left = [p for p in report.problems if p.severity == ERROR and p.line is None]
        if left or (not kept and not report.ok):
            what = left[0].detail if left else "no usable row is left"
            print(f"--fix {args.fix}: error(s) remain that --fix cannot fix ({what}); exit 1",
                  file=stream)
            return 1
    return 0 if report.ok else 1


def cmd_manifest_stats(args) -> int:
    """``paravox manifest stats M [--json]``."""
    s = manifest_stats(args.manifest)
    print(json.dumps(s, indent=2) if args.json else format_stats(s))
    return 0


def cmd_preview(args) -> int:
    """``paravox preview M -o PNG``: one utterance, features, crops."""
    check_args(args)
    check_not_input(args.output, [("manifest", args.manifest)], "-o")
    check_writable(Path(args.output).parent, "-o folder")
    out = preview_utterance(args.manifest, args.output, utt_id=args.id, seed=args.seed)
    print(f"wrote {out}")
    return 0


def add_parsers(sub) -> None:
    """Register the data commands on the top-level subparsers."""
    s = sub.add_parser("synth", help="generate the built-in synthetic speech corpus (espeak-ng)",
                       description="Generate a labelled multi-speaker corpus. Settings: a "
                       "preset, then an optional YAML file, then key=value overrides "
                       "(e.g. num_speakers=40 languages=[en,fi]).")
    s.add_argument("overrides", nargs="*", metavar="key=value")
    s.add_argument("--preset", choices=["tiny", "demo", "large"], default="tiny")
    s.add_argument("--config", help="YAML file with SynthConfig keys")
    s.add_argument("-o", "--output", required=True, help="output folder")
    s.add_argument("--overwrite", action="store_true", help="replace a non-empty output folder")
    s.add_argument("--reuse", action="store_true",
                   help="keep an existing complete corpus made with the same settings")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_synth)

    corpora = "\n".join(f"  {p.name:12} {p.summary} ({p.url})" for p in PREPARERS.values())
    s = sub.add_parser("prepare", help="manifests (and trial lists) of a standard corpus "
                       "(VoxCeleb, LibriSpeech, MUSAN, RIRs, CREMA-D, IEMOCAP, RAVDESS)",
                       description="Read a corpus folder as its owners distribute it "
                       "(unpacked) and write paravox manifests into OUT. Nothing is "
                       "downloaded. Corpora:\n" + corpora,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    s.add_argument("corpus", choices=list(PREPARERS))
    s.add_argument("source", help="the folder the corpus was unpacked into")
    s.add_argument("-o", "--output", required=True, help="output folder (not inside SRC)")
    s.add_argument("--to-wav", action="store_true", help="decode compressed audio (AAC, "
                   "MP3) once into OUT/wav/ and point the manifests there")
    s.add_argument("--workers", type=int, default=4, help="threads reading headers / "
                   "converting (default 4)")
    s.add_argument("--no-audio-check", action="store_true", help="do not read each file's "
                   "header (faster; no durations, unreadable files not found)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_prepare)

    m = sub.add_parser("manifest", help="import, export, validate and summarise manifests")
    msub = m.add_subparsers(dest="manifest_command", metavar="<action>", required=True)
    s = msub.add_parser("import", help="Kaldi, CSV, NeMo, Lhotse, SpeechBrain or Hugging Face "
                        "audio folder -> JSONL manifest",
                        description="Convert another toolkit's corpus description to a paravox "
                        "manifest (absolute audio paths).")
    s.add_argument("format", choices=IMPORT_FORMATS)
    s.add_argument("source", help="Kaldi data directory, CSV file, NeMo manifest, Lhotse cuts "
                   "or recordings file, SpeechBrain CSV/JSON, or audio folder")
    s.add_argument("-o", "--output", required=True, help="manifest to write (.jsonl)")
    s.add_argument("--audio-root", help="folder that relative audio paths start from (default: "
                   "the current folder for kaldi, lhotse, speechbrain; the manifest's for nemo)")
    s.add_argument("--delimiter", help="CSV delimiter (default ','; '\\t' or 'tab' for TSV)")
    s.add_argument("--map", action="append", metavar="COLUMN=FIELD",
                   help="csv, nemo: read COLUMN as FIELD (id, path, offset, duration, speaker, "
                   "language, text, labels.NAME, or - to drop it); repeatable")
    s.add_argument("--data-root", help="speechbrain: the value of $data_root or {data_root} "
                   "in its paths ({data_root} defaults to the CSV's folder)")
    s.add_argument("--supervisions", help="lhotse: the supervisions file of a recordings file "
                   "(default: found by its name, *_recordings_* -> *_supervisions_*)")
    s.set_defaults(func=cmd_manifest_import)
    s = msub.add_parser("export", help="JSONL manifest -> Kaldi data dir or CSV")
    s.add_argument("format", choices=["kaldi", "csv"])
    s.add_argument("manifest")
    s.add_argument("-o", "--output", required=True)
    s.set_defaults(func=cmd_manifest_export)
    s = msub.add_parser("validate", help="read every file; report bad rows and audio by name")
    s.add_argument("manifest")
    s.add_argument("--max-listed", type=int, default=20,
                   help="examples listed per kind (>= 0)")
    s.add_argument("--min-seconds", type=float, default=0.5,
                   help="warn about rows shorter than this (the crop/encoder minimum; 0 = "
                   "never)")
    s.add_argument("--json", action="store_true",
                   help="print the problems as a JSON list (line, id, path, kind, severity, "
                   "detail) instead of the summary")
    s.add_argument("--fix", metavar="OUT.jsonl",
                   help="also write a manifest of the usable rows (those without errors)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    s.set_defaults(func=cmd_manifest_validate)
    s = msub.add_parser("stats", help="utterances, hours, speakers, label counts")
    s.add_argument("manifest")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_manifest_stats)

    s = sub.add_parser("preview", help="plot one utterance, its features and augmented crops")
    s.add_argument("manifest")
    s.add_argument("-o", "--output", default="preview.png")
    s.add_argument("--id", help="utterance id (default: the first row)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_preview)
