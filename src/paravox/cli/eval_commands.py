"""Evaluation commands: ``embed``, ``evaluate sv|classify|frames``."""

from __future__ import annotations

import json
from pathlib import Path

from paravox.cli.common import (
    add_output_options,
    check_args,
    plural,
    require_bundle,
    require_file,
)
from paravox.data.manifest import Manifest
from paravox.errors import ConfigError, ParavoxError
from paravox.evaluation.phone_probe import PhoneProbeConfig
from paravox.inference import Embedder
from paravox.inference.embedder import TooManyBadItemsError, describe_bad, embed_manifest
from paravox.inference.writers import BAD_ITEMS, check_ids, write_bad_items, write_embeddings
from paravox.pipelines.evaluate import run_classify, run_frames, run_sv
from paravox.utils.atomic_files import check_writable
from paravox.utils.output_paths import check_not_inputs

MANIFEST = "a JSONL manifest (paravox manifest import makes one)"


def cmd_embed(args) -> int:
    """``paravox embed BUNDLE MANIFEST -o OUT``: one embedding per utterance.

    Rows that cannot be embedded (missing, corrupt, empty or NaN audio, a bad segment) are
    skipped and listed in ``OUT/bad_items.tsv`` (id, path, reason), with a one-line summary;
    audio shorter than the bundle's minimum is repeat-tiled up to it. Exit 0 with every good
    embedding written when at most ``--max-bad-fraction`` of the rows failed; else exit 2,
    writing only ``bad_items.tsv``. Bad options, a missing bundle or manifest, ids the format
    cannot hold, and an empty manifest fail before anything is computed."""
    check_args(args)
    require_bundle(args.bundle)
    manifest = Manifest.load(require_file("manifest", args.manifest, MANIFEST))
    if len(manifest) == 0:
        raise ParavoxError(f"manifest {args.manifest} has no rows: nothing to embed")
    check_ids([r.id for r in manifest], args.format)
    out_dir = Path(args.output)
    written = {"npz": ["embeddings.npz"], "ark": ["embeddings.ark", "embeddings.scp"],
               "npy": ["index.tsv"]}[args.format] + [BAD_ITEMS]
    check_not_inputs([out_dir / n for n in written], [("manifest", args.manifest)], "-o")
    check_writable(out_dir, "-o")
    embedder = Embedder.from_bundle(args.bundle, device=args.device)
    try:
        embeddings, bad = embed_manifest(embedder, manifest, args.chunk_seconds,
                                         progress=not args.quiet, on_error="skip",
                                         max_bad_fraction=args.max_bad_fraction)
    except TooManyBadItemsError as exc:
        if not exc.bad:
            raise
        tsv = write_bad_items(exc.bad, out_dir)
        raise ParavoxError(f"{exc}; no embeddings written, the failed rows are listed in "
                           f"{tsv}") from None
    out = write_embeddings(embeddings, out_dir, args.format)
    print(f"wrote {plural(len(embeddings), 'embedding')} of dimension {embedder.dim} to {out}")
    if bad:
        tsv = write_bad_items(bad, out_dir)
        print(f"skipped {len(bad)} of {plural(len(manifest), 'utterance')}: {describe_bad(bad)} "
              f"(reasons in {tsv})")
    else:
        (out_dir / BAD_ITEMS).unlink(missing_ok=True)  # a stale list from an earlier run
    return 0


def _outputs_not_inputs(args, names: list[str], options: tuple[str, ...]) -> None:
    """The result files a command writes into ``-o`` may not be its input files."""
    check_not_inputs([Path(args.output) / n for n in names],
                     [(f"--{o}", getattr(args, o, None)) for o in options], "-o")
    check_writable(args.output, "-o")  # before the embedding and training, not after


def cmd_evaluate_sv(args) -> int:
    """``paravox evaluate sv BUNDLE --manifest M --trials T``: EER, minDCF, DET plot; the
    options and every file are checked before anything is embedded."""
    check_args(args)
    if args.lda_dim is not None and "plda" not in args.backend:
        raise ConfigError("--lda-dim applies to the plda back-end: add --backend plda or "
                          "leave --lda-dim out")
    bundle = require_bundle(args.bundle)
    require_file("--manifest", args.manifest, MANIFEST)
    require_file("--trials", args.trials, "a trial list (lines '1|0 enrol_id test_id')")
    require_file("--train", args.train, MANIFEST + " with speaker labels")
    _outputs_not_inputs(args, ["sv_results.json", "det.png"], ("manifest", "trials", "train"))
    if args.lda_dim is not None:
        dim = json.loads((bundle / "config.json").read_text()).get("embedding_dim")
        if isinstance(dim, int) and args.lda_dim > dim:
            raise ConfigError(f"--lda-dim {args.lda_dim}: the bundle's embeddings have "
                              f"{dim} dimensions; give at most {dim}")

    results = run_sv(args.bundle, args.manifest, args.trials, args.output, args.train,
                     args.backend, args.chunk_seconds, args.top_k, args.lda_dim, args.device,
                     progress=not args.quiet)
    print(f"{'back-end':<8} {'EER %':>7} {'95 % interval':>15} {'minDCF0.01':>11} "
          f"{'minDCF0.05':>11}")
    for r in results:
        lo, hi = r.eer_ci
        print(f"{r.backend:<8} {100 * r.eer:>7.2f} {f'{100 * lo:.1f}-{100 * hi:.1f}':>15} "
              f"{r.min_dcf_01:>11.3f} {r.min_dcf_05:>11.3f}")
    print(f"wrote {args.output}/sv_results.json and {args.output}/det.png")
    return 0


def cmd_evaluate_classify(args) -> int:
    """``paravox evaluate classify BUNDLE --task T --train A --test B``."""
    check_args(args)
    require_bundle(args.bundle)
    require_file("--train", args.train, MANIFEST + " with the task's labels")
    require_file("--test", args.test, MANIFEST + " with the task's labels")
    _outputs_not_inputs(args, ["classify_results.json"], ("train", "test"))

    results = run_classify(args.bundle, args.train, args.test, args.task, args.protocol,
                           args.output, args.finetune, args.chunk_seconds, args.device,
                           args.seed, progress=not args.quiet)
    print(f"{'task':<10} {'protocol':<8} {'acc %':>6} {'UAR %':>6} {'F1 %':>6}  speaker-level")
    for r in results:
        m, spk = r.metrics, r.speaker_metrics
        extra = (f"UAR {100 * spk['uar']:.1f} % over {spk['n_speakers']} speakers" if spk
                 else "-")
        print(f"{r.task:<10} {r.protocol:<8} {100 * m['accuracy']:>6.1f} {100 * m['uar']:>6.1f} "
              f"{100 * m['macro_f1']:>6.1f}  {extra}")
    print(f"wrote {args.output}/classify_results.json and confusion plots")
    return 0


def cmd_evaluate_frames(args) -> int:
    """``paravox evaluate frames BUNDLE|logmel --train A --test B``: phone probe per layer."""
    check_args(args)
    if args.bundle != "logmel":
        require_bundle(args.bundle, "bundle")
    require_file("--train", args.train, MANIFEST + " with phone alignments")
    require_file("--test", args.test, MANIFEST + " with phone alignments")
    _outputs_not_inputs(args, ["frames_results.json", "phone_probe_layers.png"],
                        ("train", "test"))
    layers = args.layers if args.layers != ["all"] else "all"
    layers = [int(x) if x.lstrip("-").isdigit() else x for x in layers] \
        if layers != "all" else layers
    cfg = PhoneProbeConfig(probes=tuple(args.probe), layers=layers, epochs=args.epochs,
                           max_utterances=args.max_utterances,
                           max_train_frames=args.max_train_frames, weighted=not args.no_weighted,
                           per_smoothing=args.per_smoothing, seed=args.seed,
                           device=args.device)
    bundle = None if args.bundle == "logmel" else args.bundle
    result = run_frames(bundle, args.train, args.test, args.output, cfg,
                        progress=not args.quiet)
    print(result.format_table())
    best, s = result.best, result.summary()
    print(f"best layer: {best['layer']} ({100 * best['frame_accuracy']:.1f} % frame accuracy, "
          f"PER {100 * best['per']:.1f} %); chance {100 * s['chance']:.1f} % over "
          f"{s['n_phones']} phones")
    print(f"wrote {args.output}/frames_results.json and {args.output}/phone_probe_layers.png")
    return 0


def add_parsers(sub) -> None:
    """Register the embedding and evaluation commands on the top-level subparsers."""
    s = sub.add_parser("embed", help="embeddings for every utterance of a manifest")
    s.add_argument("bundle", help="folder made by `paravox export`")
    s.add_argument("manifest")
    s.add_argument("-o", "--output", required=True, help="output folder")
    s.add_argument("--format", choices=["npz", "npy", "ark"], default="npz",
                   help="one embeddings.npz, one .npy per utterance, or a Kaldi ark + scp")
    s.add_argument("--chunk-seconds", type=float, help="embed fixed chunks of this many "
                   "seconds (> 0) and average; default: whole utterances")
    s.add_argument("--max-bad-fraction", type=float, default=0.1,
                   help="rows that cannot be embedded are skipped and listed in "
                   "bad_items.tsv; more than this fraction of them (or none good) exits 2 "
                   "without writing embeddings (default 0.1)")
    s.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N or mps (default cpu)")
    s.add_argument("-q", "--quiet", action="store_true",
                   help="no progress bar; only the summary lines")
    s.set_defaults(func=cmd_embed)

    e = sub.add_parser("evaluate", help="evaluate a bundle: speaker verification, "
                       "utterance classification")
    esub = e.add_subparsers(dest="evaluate_command", metavar="<task>", required=True)
    s = esub.add_parser("sv", help="score a VoxCeleb-format trial list: EER, minDCF, DET plot")
    s.add_argument("bundle", help="folder made by `paravox export`")
    s.add_argument("--manifest", required=True, help="manifest with the trial utterances")
    s.add_argument("--trials", required=True, help="lines '1|0 enrol_id test_id'")
    s.add_argument("--train", help="speaker-labelled manifest (disjoint speakers) for the "
                   "mean, the AS-Norm cohort and PLDA")
    s.add_argument("--backend", nargs="+", default=["cosine"],
                   choices=["cosine", "asnorm", "plda"])
    s.add_argument("--top-k", type=int, default=100, help="AS-Norm cohort size per side")
    s.add_argument("--lda-dim", type=int, help="PLDA: LDA dimension before PLDA (at most the "
                   "embedding dimension)")
    s.add_argument("--chunk-seconds", type=float, help="embed fixed chunks of this many "
                   "seconds (> 0) and average; default: whole utterances")
    add_output_options(s, "eval_sv", seed=False)
    s.set_defaults(func=cmd_evaluate_sv)

    s = esub.add_parser("classify", help="utterance classification (probes or fine-tuning): "
                        "accuracy, UAR, macro-F1, confusion plots")
    s.add_argument("bundle", help="folder made by `paravox export`")
    s.add_argument("--task", nargs="+", required=True,
                   help="label(s): language, speaker, or keys of the rows' labels (style, "
                   "fluency, age, gender on the built-in corpus)")
    s.add_argument("--protocol", nargs="+", default=["linear"],
                   choices=["linear", "mlp", "full", "staged"],
                   help="linear probe / MLP adapter on frozen embeddings; fine-tuning all at "
                   "once (full) or staged (embedding layer + classifier, then everything)")
    s.add_argument("--train", required=True, help="labelled training manifest")
    s.add_argument("--test", required=True, help="test manifest (unseen speakers)")
    s.add_argument("--chunk-seconds", type=float, help="test: embed / classify fixed chunks "
                   "and average")
    s.add_argument("--finetune", nargs="*", default=[], metavar="key=value",
                   help="fine-tuning settings, e.g. crop_seconds=3 augment=false "
                   "stage1_epochs=2 stage2_lr=1e-4 (see FineTuneConfig)")
    add_output_options(s, "eval_classify")
    s.set_defaults(func=cmd_evaluate_classify)

    s = esub.add_parser("frames", help="phone classification from frozen frame features of "
                        "each layer (frame accuracy, PER) against the log-mel floor",
                        description="Linear (and MLP) probes on the frame outputs of every "
                        "encoder layer, read on the 10 ms grid of the manifests' phone "
                        "alignments, plus a SUPERB-style learned weighted sum of layers; the "
                        "log-mel frames are the floor. Pass 'logmel' instead of a bundle for "
                        "the floor alone.")
    s.add_argument("bundle", help="folder made by `paravox export`, or 'logmel'")
    s.add_argument("--train", required=True, help="manifest with phone alignments (training)")
    s.add_argument("--test", required=True, help="manifest with phone alignments (test)")
    s.add_argument("--probe", nargs="+", default=["linear", "mlp"], choices=["linear", "mlp"])
    s.add_argument("--layers", nargs="+", default=["all"],
                   help="layer names or indices to probe (default: all)")
    s.add_argument("--epochs", type=int, default=5, help="probe training epochs")
    s.add_argument("--max-utterances", type=int, help="per split, a seeded subset")
    s.add_argument("--max-train-frames", type=int, default=60000,
                   help="a seeded subsample of the training frames")
    s.add_argument("--no-weighted", action="store_true", help="skip the weighted-sum probe")
    s.add_argument("--per-smoothing", type=int, default=9, help="PER: majority filter of this "
                   "many frames over the predictions before collapsing runs (1 = raw)")
    add_output_options(s, "eval_frames")
    s.set_defaults(func=cmd_evaluate_frames)

