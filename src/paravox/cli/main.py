"""``paravox <command>``: thin wrappers over library functions (no logic here)."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from paravox.errors import ParavoxError


def cmd_version(args) -> int:
    from paravox import __version__

    print(f"paravox {__version__}")
    return 0


def cmd_synth(args) -> int:
    from paravox.data.synth import PRESETS, SynthConfig, generate_corpus
    from paravox.utils.config import build_config

    cfg = build_config(SynthConfig, base=PRESETS[args.preset], yaml_path=args.config,
                       overrides=args.overrides)
    s = generate_corpus(cfg, args.output, progress=not args.quiet, overwrite=args.overwrite,
                        reuse=args.reuse)
    if s.get("reused"):
        print(f"reusing {args.output}: same config, {s['utterances']} utterances, "
              f"{s['hours']:.2f} h (use --overwrite to regenerate)")
        return 0
    print(f"wrote {args.output}: {s['speakers']} speakers, {s['utterances']} utterances, "
          f"{s['hours']:.2f} h, {s['trials']} trials, {s['phones']} phone labels "
          f"in {s['wall_seconds']:.1f} s ({s['hours'] * 3600 / s['wall_seconds']:.0f}x real time)")
    return 0


def cmd_manifest_import(args) -> int:
    from paravox.data.importers import import_csv, import_kaldi
    from paravox.data.manifest import write_manifest

    if args.format == "kaldi":
        rows = import_kaldi(args.source, audio_root=args.audio_root)
    else:
        rows = import_csv(args.source, delimiter=args.delimiter)
    write_manifest(rows, args.output)
    print(f"wrote {len(rows)} rows to {args.output}; run `paravox manifest validate "
          f"{args.output}` to check the audio")
    return 0


def cmd_manifest_export(args) -> int:
    from paravox.data.importers import export_csv, export_kaldi
    from paravox.data.manifest import Manifest

    m = Manifest.load(args.manifest)
    if args.format == "kaldi":
        export_kaldi(m.rows, args.output, root=m.root)
    else:
        export_csv(m.rows, args.output, root=m.root)
    print(f"wrote {len(m)} rows to {args.output}")
    return 0


def cmd_manifest_validate(args) -> int:
    from paravox.data.validate import validate_manifest

    report = validate_manifest(args.manifest, progress=not args.quiet)
    print(report.summary(max_listed=args.max_listed))
    return 0 if report.ok else 1


def cmd_manifest_stats(args) -> int:
    from paravox.data.stats import format_stats, manifest_stats

    s = manifest_stats(args.manifest)
    print(json.dumps(s, indent=2) if args.json else format_stats(s))
    return 0


def _train(args, methods: tuple[str, ...], command: str) -> int:
    from paravox.methods.recipes import load_recipe, recipe_method, run_recipe

    method = recipe_method(args.recipe, args.overrides)
    if method not in methods:
        other = "train-supervised" if method == "supervised" else "pretrain"
        raise ParavoxError(f"{args.recipe} is a '{method}' recipe: run it with "
                           f"`paravox {other}`, not `paravox {command}`")
    recipe = load_recipe(args.recipe, args.overrides)
    result = run_recipe(recipe)
    msg = f"trained {result['steps']} steps; run in {result['out_dir']}"
    if "eer" in result:
        msg += f"; {method} cosine EER on {recipe.trials}: {100 * result['eer']:.2f} %"
    print(msg)
    return 0


def cmd_pretrain(args) -> int:
    return _train(args, ("dino", "simclr"), "pretrain")


def cmd_train_supervised(args) -> int:
    return _train(args, ("supervised",), "train-supervised")


def cmd_export(args) -> int:
    from paravox.inference import export_bundle

    out = export_bundle(args.run, args.output, which=args.which)
    print(f"wrote bundle {out} (model.safetensors + config.json)")
    if args.onnx:
        from paravox.inference.onnx_export import export_onnx

        print(f"wrote {export_onnx(out)} (input wave [batch, samples], output embedding)")
    return 0


def cmd_embed(args) -> int:
    from paravox.data.manifest import Manifest
    from paravox.inference import Embedder
    from paravox.inference.embedder import embed_manifest
    from paravox.inference.writers import write_embeddings

    embedder = Embedder.from_bundle(args.bundle, device=args.device)
    manifest = Manifest.load(args.manifest)
    embeddings = embed_manifest(embedder, manifest, args.chunk_seconds, progress=not args.quiet)
    out = write_embeddings(embeddings, args.output, args.format)
    print(f"wrote {len(embeddings)} embeddings of dimension {embedder.dim} to {out}")
    return 0


def cmd_evaluate_sv(args) -> int:
    from paravox.evaluation.sv import evaluate_sv
    from paravox.inference import Embedder
    from paravox.report.plots import det_plot

    embedder = Embedder.from_bundle(args.bundle, device=args.device)
    results = evaluate_sv(embedder, args.manifest, args.trials, args.train, args.backend,
                          args.chunk_seconds, args.top_k, args.lda_dim, progress=not args.quiet)
    out = Path(args.output)
    out.mkdir(parents=True, exist_ok=True)
    (out / "sv_results.json").write_text(json.dumps([r.row() for r in results], indent=2))
    det_plot({r.backend: (r.scores, r.labels) for r in results}, out / "det.png",
             title=f"DET: {Path(args.bundle).name} on {Path(args.trials).name}")
    print(f"{'back-end':<8} {'EER %':>7} {'minDCF0.01':>11} {'minDCF0.05':>11}")
    for r in results:
        print(f"{r.backend:<8} {100 * r.eer:>7.2f} {r.min_dcf_01:>11.3f} {r.min_dcf_05:>11.3f}")
    print(f"wrote {out}/sv_results.json and {out}/det.png")
    return 0


def cmd_evaluate_classify(args) -> int:
    from paravox.evaluation.classify import (
        FROZEN_PROTOCOLS,
        evaluate_classification,
        evaluate_finetuned,
    )
    from paravox.inference import Embedder
    from paravox.methods.finetune import FineTuneConfig
    from paravox.report.plots import confusion_plot

    out = Path(args.output)
    frozen = [p for p in args.protocol if p in FROZEN_PROTOCOLS]
    results = []
    if frozen:
        embedder = Embedder.from_bundle(args.bundle, device=args.device)
        results += evaluate_classification(embedder, args.train, args.test, args.task, frozen,
                                           args.chunk_seconds, progress=not args.quiet,
                                           seed=args.seed)
    from paravox.utils.config import build_config

    ft_cfg = build_config(FineTuneConfig, overrides=[f"seed={args.seed}", *args.finetune])
    for task in args.task:
        for protocol in [p for p in args.protocol if p not in FROZEN_PROTOCOLS]:
            results.append(evaluate_finetuned(args.bundle, args.train, args.test, task,
                                              protocol, ft_cfg, out / "finetune",
                                              args.chunk_seconds, progress=not args.quiet))
    out.mkdir(parents=True, exist_ok=True)
    (out / "classify_results.json").write_text(json.dumps([r.row() for r in results],
                                                          indent=2))
    print(f"{'task':<10} {'protocol':<8} {'acc %':>6} {'UAR %':>6} {'F1 %':>6}  speaker-level")
    for r in results:
        confusion_plot(r.metrics["confusion"], r.classes, out / f"confusion_{r.task}_"
                       f"{r.protocol}.png", title=f"{r.task}, {r.protocol}")
        m, spk = r.metrics, r.speaker_metrics
        extra = (f"UAR {100 * spk['uar']:.1f} % over {spk['n_speakers']} speakers" if spk
                 else "-")
        print(f"{r.task:<10} {r.protocol:<8} {100 * m['accuracy']:>6.1f} {100 * m['uar']:>6.1f} "
              f"{100 * m['macro_f1']:>6.1f}  {extra}")
    print(f"wrote {out}/classify_results.json and confusion plots")
    return 0


def cmd_finetune_two_step(args) -> int:
    from paravox.evaluation.two_step import run_two_step
    from paravox.methods.two_step import TwoStepConfig
    from paravox.report.two_step_report import write_two_step_report
    from paravox.utils.config import build_config

    cfg = build_config(TwoStepConfig, overrides=[f"seed={args.seed}", *args.set])
    out = Path(args.output)
    payload = run_two_step(args.bundle, args.train, args.test, args.task, cfg, out,
                           baselines=not args.no_baselines, progress=not args.quiet)
    md, html = write_two_step_report(out, payload)
    print(f"wrote {out}/results.json, {md} and {html}; step-1 bundles (with their adapter) "
          f"in {out}/<task>/<variant>/bundle")
    return 0


def cmd_demo(args) -> int:
    from paravox.report.demo import run_demo

    run_demo(args.preset, args.output, args.corpus, reuse=args.reuse, progress=not args.quiet)
    return 0


def cmd_preview(args) -> int:
    from paravox.report.preview import preview_utterance

    out = preview_utterance(args.manifest, args.output, utt_id=args.id, seed=args.seed)
    print(f"wrote {out}")
    return 0


def cmd_encoders(args) -> int:
    import torch

    from paravox.models import ENCODERS, build_encoder, count_parameters
    from paravox.utils.config import build_config

    names = [args.name] if args.name else sorted(ENCODERS)
    print(f"{'encoder':<10} {'parameters':>12} {'embedding':>10} {'frame channels':>15}")
    for name in names:
        cfg = build_config(ENCODERS[name][1], overrides=args.overrides if args.name else None)
        enc = build_encoder(name, **vars(cfg)).eval()
        with torch.no_grad():
            out = enc(torch.zeros(1, 200, cfg.n_mels))
        print(f"{name:<10} {count_parameters(enc):>12,} {enc.embedding_dim:>10} "
              f"{out.frames.shape[-1]:>15}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="paravox", description=(
        "Self-supervised utterance-level speech representations and their transfer."))
    sub = p.add_subparsers(dest="command", metavar="<command>", required=True)

    s = sub.add_parser("version", help="print the paravox version")
    s.set_defaults(func=cmd_version)

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

    m = sub.add_parser("manifest", help="import, export, validate and summarise manifests")
    msub = m.add_subparsers(dest="manifest_command", metavar="<action>", required=True)
    s = msub.add_parser("import", help="Kaldi data dir or CSV -> JSONL manifest")
    s.add_argument("format", choices=["kaldi", "csv"])
    s.add_argument("source", help="Kaldi data directory or CSV file")
    s.add_argument("-o", "--output", required=True, help="manifest to write (.jsonl)")
    s.add_argument("--audio-root", help="Kaldi: folder that relative wav.scp paths start from "
                   "(default: current folder)")
    s.add_argument("--delimiter", default=",", help="CSV delimiter")
    s.set_defaults(func=cmd_manifest_import)
    s = msub.add_parser("export", help="JSONL manifest -> Kaldi data dir or CSV")
    s.add_argument("format", choices=["kaldi", "csv"])
    s.add_argument("manifest")
    s.add_argument("-o", "--output", required=True)
    s.set_defaults(func=cmd_manifest_export)
    s = msub.add_parser("validate", help="read every file; report bad rows and audio by name")
    s.add_argument("manifest")
    s.add_argument("--max-listed", type=int, default=20)
    s.add_argument("-q", "--quiet", action="store_true")
    s.set_defaults(func=cmd_manifest_validate)
    s = msub.add_parser("stats", help="utterances, hours, speakers, label counts")
    s.add_argument("manifest")
    s.add_argument("--json", action="store_true")
    s.set_defaults(func=cmd_manifest_stats)

    s = sub.add_parser("pretrain", help="self-supervised pretraining (DINO, SimCLR) from a "
                       "recipe", description="Train with a YAML recipe (see recipes/) and "
                       "key=value overrides, e.g. run.epochs=2 dino.optim.lr=0.001. Resume "
                       "with resume_from=<out_dir>/checkpoints/last.ckpt.")
    s.add_argument("recipe", help="YAML recipe, e.g. recipes/dino_demo.yaml")
    s.add_argument("overrides", nargs="*", metavar="key=value")
    s.set_defaults(func=cmd_pretrain)

    s = sub.add_parser("train-supervised", help="supervised speaker-classification baseline "
                       "(x-vector, softmax or AAM-softmax) from a recipe",
                       description="Train with a YAML recipe (method: supervised) and key=value "
                       "overrides, e.g. supervised.loss=softmax run.epochs=5.")
    s.add_argument("recipe", help="YAML recipe, e.g. recipes/xvector_demo.yaml")
    s.add_argument("overrides", nargs="*", metavar="key=value")
    s.set_defaults(func=cmd_train_supervised)

    s = sub.add_parser("export", help="export a run's evaluation encoder as a bundle "
                       "(safetensors + JSON)")
    s.add_argument("run", help="run folder (or a .ckpt in its checkpoints/)")
    s.add_argument("-o", "--output", required=True, help="bundle folder to write")
    s.add_argument("--which", help="state-dict prefix to export instead of the default "
                   "(e.g. student.encoder. for a DINO student)")
    s.add_argument("--onnx", action="store_true", help="also write model.onnx (waveform -> "
                   "embedding, dynamic batch and time axes; needs paravox[onnx])")
    s.set_defaults(func=cmd_export)

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

    f = sub.add_parser("finetune", help="fine-tuning methods that export bundles")
    fsub = f.add_subparsers(dest="finetune_command", required=True)
    s = fsub.add_parser(
        "two-step", help="two-step fine-tuning (contrastive + non-contrastive step 1, adapter "
        "step 2) and its baselines -> table, plots, bundles",
        description="Step 1 reshapes the bundle's embedding space with a contrastive + w * "
        "non-contrastive loss on class-balanced batches; step 2 trains a bottleneck adapter on "
        "the frozen space (Lux et al. 2022). Unless --no-baselines: each step-1 loss alone, the "
        "adapter without step 1, a linear probe and end-to-end fine-tuning on the same splits. "
        "Writes results.json, report.md/html and, per task and variant, a bundle of the step-1 "
        "network with its adapter (usable by `paravox embed` / `evaluate`).")
    s.add_argument("bundle", help="folder made by `paravox export` (the pretrained encoder)")
    s.add_argument("--task", nargs="+", required=True, help="label(s), e.g. style fluency")
    s.add_argument("--train", required=True, help="labelled training manifest")
    s.add_argument("--test", required=True, help="test manifest (unseen speakers)")
    s.add_argument("--set", nargs="*", default=[], metavar="key=value",
                   help="TwoStepConfig settings, e.g. weight=0.05 margin=1.0 epochs=4 "
                   "noncontrastive=vicreg train_top_layers=2")
    s.add_argument("--no-baselines", action="store_true", help="only the two-step method")
    s.add_argument("-o", "--output", default="runs/two_step", help="output folder")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_finetune_two_step)

    s = sub.add_parser("demo", help="the whole pipeline on the synthetic corpus -> a report "
                       "(about 15 min on 2 CPU cores; --preset tiny: a minute or two)",
                       description="Generate (or reuse) the corpus; pretrain DINO and SimCLR; "
                       "train the supervised x-vector; evaluate them and a random encoder on "
                       "speaker verification and the style/fluency/language tasks (linear probe "
                       "and staged fine-tuning); write report.md and a self-contained "
                       "report.html.")
    s.add_argument("--preset", choices=["demo", "tiny"], default="demo")
    s.add_argument("-o", "--output", default="runs/demo", help="output folder")
    s.add_argument("--corpus", help="corpus folder (default: data/demo for the demo preset, "
                   "<output>/corpus for tiny); generated when missing")
    s.add_argument("--reuse", action="store_true", help="reuse bundles already in <output>/"
                   "bundles instead of training again (e.g. to redo the evaluation and report)")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_demo)

    s = sub.add_parser("encoders", help="list encoders with their parameter counts")
    s.add_argument("name", nargs="?", help="one encoder, configured by key=value overrides")
    s.add_argument("overrides", nargs="*", metavar="key=value")
    s.set_defaults(func=cmd_encoders)

    s = sub.add_parser("preview", help="plot one utterance, its features and augmented crops")
    s.add_argument("manifest")
    s.add_argument("-o", "--output", default="preview.png")
    s.add_argument("--id", help="utterance id (default: the first row)")
    s.add_argument("--seed", type=int, default=0)
    s.set_defaults(func=cmd_preview)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except ParavoxError as exc:
        print(f"paravox: error: {exc}", file=sys.stderr)
        return 2
    except KeyError as exc:  # e.g. an utterance id that is not in the manifest
        print(f"paravox: error: not found: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
