"""Experiment commands: ``finetune two-step``, ``demo``, ``study dino|mgf|learn2diss``."""

from __future__ import annotations

from pathlib import Path

from paravox.cli.common import add_output_options, check_args, require_bundle, require_file


def cmd_finetune_two_step(args) -> int:
    """``paravox finetune two-step BUNDLE --task T --train A --test B``."""
    from paravox.pipelines.two_step import two_step_experiment

    check_args(args)
    require_bundle(args.bundle)
    require_file("--train", args.train, "a JSONL manifest with the task's labels")
    require_file("--test", args.test, "a JSONL manifest with the task's labels")
    out = Path(args.output)
    md, html = two_step_experiment(args.bundle, args.train, args.test, args.task, args.set,
                                   out, seed=args.seed, baselines=not args.no_baselines,
                                   progress=not args.quiet)
    print(f"wrote {out}/results.json, {md} and {html}; step-1 bundles (with their adapter) "
          f"in {out}/<task>/<variant>/bundle")
    return 0


def cmd_demo(args) -> int:
    """``paravox demo [--preset tiny] -o OUT``: the whole pipeline -> a report."""
    from paravox.pipelines.demo import run_demo

    run_demo(args.preset, args.output, args.corpus, reuse=args.reuse, progress=not args.quiet)
    return 0


def cmd_study_dino(args) -> int:
    """``paravox study dino [--preset tiny] -o OUT``: the DINO paper's four findings."""
    from paravox.pipelines.dino_study import run_dino_study

    run_dino_study(args.preset, args.output, args.corpus, reuse=args.reuse,
                   progress=not args.quiet)
    return 0


def cmd_study_mgf(args) -> int:
    """``paravox study mgf [--preset tiny] -o OUT``: MGF, its ablations and the baselines."""
    from paravox.pipelines.mgf import run_mgf_study

    run_mgf_study(args.preset, args.output, args.corpus, reuse=args.reuse,
                  progress=not args.quiet, variants=args.variant)
    return 0


def cmd_study_learn2diss(args) -> int:
    """``paravox study learn2diss [--preset tiny] -o OUT``: Learn2Diss, its ablations and
    the baselines."""
    from paravox.pipelines.learn2diss import run_learn2diss_study

    check_args(args)
    run_learn2diss_study(args.preset, args.output, args.corpus, reuse=args.reuse,
                         progress=not args.quiet, mgf_dir=args.mgf_dir)
    return 0


def add_study_options(s, default_output: str) -> None:
    """The options every ``paravox study`` shares: preset, corpus, --reuse, -o/-q."""
    s.add_argument("--preset", choices=["demo", "tiny"], default="demo")
    s.add_argument("--corpus", help="corpus folder (default: data/demo for the demo preset, "
                   "<output>/corpus for tiny); generated when missing")
    s.add_argument("--reuse", action="store_true", help="reuse finished runs and bundles "
                   "instead of training again")
    add_output_options(s, default_output, device=False, seed=False)


def add_parsers(sub) -> None:
    """Register the experiment commands on the top-level subparsers."""
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
    add_output_options(s, "runs/two_step", device=False)
    s.set_defaults(func=cmd_finetune_two_step)

    s = sub.add_parser("demo", help="the whole pipeline on the synthetic corpus -> a report "
                       "(about 10 min on 2 CPU cores; --preset tiny: a minute or two)",
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

    st = sub.add_parser("study", help="experiments that compare methods at one budget")
    ssub = st.add_subparsers(dest="study_command", metavar="<study>", required=True)
    s = ssub.add_parser(
        "dino", help="the DINO paper's findings: DINO (tuned, every setting reported) vs "
        "x-vector vs SimCLR vs random init; staged vs all-at-once vs linear probe; chunk "
        "length; augmentation -> tables, curves, verdicts (about an hour on 2 cores)",
        description="Sweep DINO's settings at the recipe budget (chosen on dev trials), train "
        "the best and SimCLR longer with EER-vs-steps curves, train the x-vector, score every "
        "model on SV and the style / fluency / language tasks, then fine-tune the tuned DINO "
        "per task under each protocol, chunk length and with / without augmentation; writes "
        "results.json and report.md/html.")
    add_study_options(s, "runs/study")
    s.set_defaults(func=cmd_study_dino)

    s = ssub.add_parser(
        "mgf", help="MGF (multi-granular SSL) with each scale alone, each pair, the generative "
        "loss at the phoneme scale, DINO, SimCLR, random init and log-mel -> table, plots",
        description="Train every row at the same budget on the corpus's pretrain split, then "
        "score each: phone probe per layer, SV EER, closed-set speaker ID, style and language "
        "UAR; writes results.json and report.md/html.")
    s.add_argument("--variant", nargs="+", help="only these MGF rows (default: all)")
    add_study_options(s, "runs/mgf")
    s.set_defaults(func=cmd_study_mgf)

    s = ssub.add_parser(
        "learn2diss", help="Learn2Diss: stage 1 alone, the joint stage with and without the "
        "MI penalty and at other weights, MGF, DINO and random init -> table, plots",
        description="Train the two-stage learn2diss_demo recipe once per stage-2 variant "
        "(stage 1 shared), then score each row: phone probe on the frame encoder, speaker ID "
        "from it, SV / style / language on the utterance embedding, the phone probe on the "
        "utterance encoder and a held-out CLUB MI estimate; writes results.json and "
        "report.md/html.")
    s.add_argument("--mgf-dir", default="runs/mgf", help="with --reuse: take the MGF and "
                   "DINO bundles of this `paravox study mgf` output when they are there")
    add_study_options(s, "runs/learn2diss")
    s.set_defaults(func=cmd_study_learn2diss)
