"""Experiment commands: ``finetune two-step``, ``demo``, and ``study NAME`` for every study
in the study registry (``dino``, ``mgf``, ``learn2diss``, ...)."""

from __future__ import annotations

from paravox.cli.common import add_output_options, check_args, require_bundle, require_file
from paravox.pipelines.demo import run_demo
from paravox.pipelines.study_registry import studies
from paravox.pipelines.two_step_experiment import two_step_experiment
from paravox.utils.folder_lock import hold_folder
from paravox.utils.output_paths import check_not_inputs, check_output_folder


def cmd_finetune_two_step(args) -> int:
    """``paravox finetune two-step BUNDLE --task T --train A --test B``."""
    check_args(args)
    require_bundle(args.bundle)
    require_file("--train", args.train, "a JSONL manifest with the task's labels")
    require_file("--test", args.test, "a JSONL manifest with the task's labels")
    out = check_output_folder(args.output, "-o")
    check_not_inputs([out / "results.json"], [("--train", args.train), ("--test", args.test)],
                     "-o")
    with hold_folder(out, "output folder"):
        md, html = two_step_experiment(args.bundle, args.train, args.test, args.task,
                                       args.set, out, seed=args.seed,
                                       baselines=not args.no_baselines,
                                       progress=not args.quiet)
    print(f"wrote {out}/results.json, {md} and {html}; step-1 bundles (with their adapter) "
          f"in {out}/<task>/<variant>/bundle")
    return 0


def cmd_demo(args) -> int:
    """``paravox demo [--preset tiny] -o OUT``: the whole pipeline -> a report. The output
    folder may not be the root, home or current folder, and is held by this process."""
    out = check_output_folder(args.output, "-o")
    with hold_folder(out, "output folder"):
        run_demo(args.preset, args.output, args.corpus, reuse=args.reuse,
                 progress=not args.quiet)
    return 0


def cmd_study(args) -> int:
    """``paravox study NAME [--preset tiny] -o OUT [study options]``: the registered study
    ``NAME`` (:mod:`paravox.pipelines.study_registry`); its output folder is checked and held
    like the demo's."""
    check_args(args)
    spec = studies()[args.study_command]
    options = {o.dest: getattr(args, o.dest) for o in spec.options}
    out = check_output_folder(args.output, "-o")
    with hold_folder(out, "output folder"):
        spec.run(args.preset, args.output, args.corpus, reuse=args.reuse,
                 progress=not args.quiet, **options)
    return 0


def add_study_options(s, default_output: str, presets=("demo", "tiny")) -> None:
    """The options every ``paravox study`` shares: preset, corpus, --reuse, -o/-q."""
    s.add_argument("--preset", choices=list(presets), default=presets[0])
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
    s.add_argument("--reuse", action="store_true", help="reuse finished runs in <output>/runs "
                   "(an interrupted one resumes; one trained with other settings is refused) "
                   "instead of training again, e.g. to redo the evaluation and report")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bars")
    s.set_defaults(func=cmd_demo)

    st = sub.add_parser("study", help="experiments that compare methods at one budget")
    ssub = st.add_subparsers(dest="study_command", metavar="<study>", required=True)
    for spec in studies().values():
        s = ssub.add_parser(spec.name, help=spec.help, description=spec.description)
        for o in spec.options:
            s.add_argument(o.flag, dest=o.dest, nargs=o.nargs, default=o.default, help=o.help)
        add_study_options(s, spec.output, spec.presets)
        s.set_defaults(func=cmd_study)
