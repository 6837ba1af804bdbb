"""Evaluation commands: ``embed``, ``evaluate sv|classify|frames``."""

from __future__ import annotations


def cmd_embed(args) -> int:
    """``paravox embed BUNDLE MANIFEST -o OUT``: one embedding per utterance."""
    from paravox.data.manifest import Manifest
    from paravox.inference import Embedder
    from paravox.inference.embedder import embed_manifest
    from paravox.inference.writers import write_embeddings

    embedder = Embedder.from_bundle(args.bundle, device=args.device)
    embeddings = embed_manifest(embedder, Manifest.load(args.manifest), args.chunk_seconds,
                                progress=not args.quiet)
    out = write_embeddings(embeddings, args.output, args.format)
    print(f"wrote {len(embeddings)} embeddings of dimension {embedder.dim} to {out}")
    return 0


def cmd_evaluate_sv(args) -> int:
    """``paravox evaluate sv BUNDLE --manifest M --trials T``: EER, minDCF, DET plot."""
    from paravox.pipelines.evaluate import run_sv

    results = run_sv(args.bundle, args.manifest, args.trials, args.output, args.train,
                     args.backend, args.chunk_seconds, args.top_k, args.lda_dim, args.device,
                     progress=not args.quiet)
    print(f"{'back-end':<8} {'EER %':>7} {'minDCF0.01':>11} {'minDCF0.05':>11}")
    for r in results:
        print(f"{r.backend:<8} {100 * r.eer:>7.2f} {r.min_dcf_01:>11.3f} {r.min_dcf_05:>11.3f}")
    print(f"wrote {args.output}/sv_results.json and {args.output}/det.png")
    return 0


def cmd_evaluate_classify(args) -> int:
    """``paravox evaluate classify BUNDLE --task T --train A --test B``."""
    from paravox.pipelines.evaluate import run_classify

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




def add_parsers(sub) -> None:
    """Register the embedding and evaluation commands on the top-level subparsers."""
    s = sub.add_parser("embed", help="embeddings for every utterance of a manifest")
    s.add_argument("bundle", help="folder made by `paravox export`")
    s.add_argument("manifest")
    s.add_argument("-o", "--output", required=True, help="output folder")
    s.add_argument("--format", choices=["npz", "npy", "ark"], default="npz",
                   help="one embeddings.npz, one .npy per utterance, or a Kaldi ark + scp")
    s.add_argument("--chunk-seconds", type=float, help="embed fixed chunks and average")
    s.add_argument("--device", default="cpu")
    s.add_argument("-q", "--quiet", action="store_true")
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
    s.add_argument("--lda-dim", type=int, help="PLDA: LDA dimension before PLDA")
    s.add_argument("--chunk-seconds", type=float, help="embed fixed chunks and average")
    s.add_argument("-o", "--output", default="eval_sv", help="output folder")
    s.add_argument("--device", default="cpu")
    s.add_argument("-q", "--quiet", action="store_true")
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
    s.add_argument("-o", "--output", default="eval_classify", help="output folder")
    s.add_argument("--device", default="cpu")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=cmd_evaluate_classify)

