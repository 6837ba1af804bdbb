"""Training commands: ``pretrain``, ``train-supervised``, ``export``, ``encoders``."""

from __future__ import annotations

import torch

from paravox.cli.common import plural
from paravox.inference import export_bundle
from paravox.inference.onnx_export import export_onnx
from paravox.models import ENCODERS, build_encoder, count_parameters
from paravox.pipelines.train import train_recipe
from paravox.training.engine import is_rank_nonzero, quiet_lightning
from paravox.training.recipes import load_recipe
from paravox.training.registry import methods_for
from paravox.utils.config import build_config, config_yaml


def _train(args, command: str) -> int:
    overrides = list(args.overrides) + (["run.progress_bar=false"] if args.quiet else [])
    if args.print_config:
        print(config_yaml(load_recipe(args.recipe, overrides)), end="")
        return 0
    mode = "resume" if args.resume else "restart" if args.restart else "auto"
    with quiet_lightning(hide_warnings=args.quiet):  # -q: no library warnings either
        result = train_recipe(args.recipe, overrides, command, mode=mode)
    if is_rank_nonzero():
        return 0  # under DDP every process runs this command; the first one reports
    msg = (f"{'finished earlier:' if result.get('skipped') else 'trained'} "
           f"{plural(result['steps'], 'step')}; run in {result['out_dir']}")
    if "eer" in result:
        msg += (f"; {result['method']} cosine EER on {result['recipe'].trials}: "
                f"{100 * result['eer']:.2f} %")
    print(msg)
    return 0


def cmd_pretrain(args) -> int:
    """``paravox pretrain RECIPE [key=value ...]``."""
    return _train(args, "pretrain")


def cmd_train_supervised(args) -> int:
    """``paravox train-supervised RECIPE [key=value ...]``."""
    return _train(args, "train-supervised")


def cmd_export(args) -> int:
    """``paravox export RUN -o BUNDLE [--which NAME] [--onnx]``."""
    out = export_bundle(args.run, args.output, which=args.which)
    print(f"wrote bundle {out} (model.safetensors + config.json)")
    if args.onnx:
        print(f"wrote {export_onnx(out)} (input wave [batch, samples], output embedding)")
    return 0


def cmd_encoders(args) -> int:
    """``paravox encoders [NAME key=value ...]``: parameter counts and output sizes."""
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


def _train_options(s, example: str) -> None:
    s.add_argument("recipe", help=f"YAML recipe, e.g. {example}")
    s.add_argument("overrides", nargs="*", metavar="key=value")
    s.add_argument("--print-config", action="store_true",
                   help="print the resolved recipe (every key, with the overrides) and exit")
    s.add_argument("-q", "--quiet", action="store_true", help="no progress bar and no "
                   "library warnings (paravox's own warnings and errors still show)")
    again = s.add_mutually_exclusive_group()
    again.add_argument("--resume", action="store_true", help="continue the run in out_dir "
                       "with this config even though it changed (e.g. more epochs); without "
                       "a flag an unchanged config resumes and a changed one is refused")
    again.add_argument("--restart", action="store_true", help="delete the run in out_dir "
                       "(checkpoints, logs) and train from scratch")


def add_parsers(sub) -> None:
    """Register the training commands on the top-level subparsers."""
    s = sub.add_parser("pretrain", help="self-supervised pretraining ("
                       f"{', '.join(methods_for('pretrain'))}) from a recipe",
                       description="Train with a YAML recipe (a file, or the name of a "
                       "recipe shipped with paravox, e.g. dino_demo) and "
                       "key=value overrides, e.g. run.epochs=2 dino.optim.lr=0.001. Re-running "
                       "the same command resumes an interrupted run (Ctrl-C saves a "
                       "checkpoint); --resume / --restart for a changed config.")
    _train_options(s, "recipes/dino_demo.yaml or dino_demo")
    s.set_defaults(func=cmd_pretrain)

    s = sub.add_parser("train-supervised", help="supervised speaker-classification baseline "
                       "(x-vector, softmax or AAM-softmax) from a recipe",
                       description="Train with a YAML recipe (method: supervised) and key=value "
                       "overrides, e.g. supervised.loss=softmax run.epochs=5.")
    _train_options(s, "recipes/xvector_demo.yaml or xvector_demo")
    s.set_defaults(func=cmd_train_supervised)

    s = sub.add_parser("export", help="export a run's evaluation encoder as a bundle "
                       "(safetensors + JSON)")
    s.add_argument("run", help="run folder (or a .ckpt in its checkpoints/)")
    s.add_argument("-o", "--output", required=True, help="bundle folder to write")
    s.add_argument("--which", help="which encoder: a name the method exports (e.g. student "
                   "for DINO) or a state-dict prefix such as student.encoder.")
    s.add_argument("--onnx", action="store_true", help="also write model.onnx (waveform -> "
                   "embedding, dynamic batch and time axes; needs paravox[onnx])")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("encoders", help="list encoders with their parameter counts")
    s.add_argument("name", nargs="?", help="one encoder, configured by key=value overrides")
    s.add_argument("overrides", nargs="*", metavar="key=value")
    s.set_defaults(func=cmd_encoders)

