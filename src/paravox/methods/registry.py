"""The method registry: one entry per training method, the only place a method is announced.

An entry (:class:`MethodSpec`) says everything the rest of paravox needs to know about a method:
its config dataclass (the recipe key of the same name), its LightningModule, which encoders
of the trained module can be exported as bundles (name -> state-dict prefix; the first is the
default), and which command runs it. Recipes, ``paravox pretrain`` / ``train-supervised``,
``paravox export`` and the demo read the registry; nothing else names a method.

Adding a method: write ``methods/<name>.py`` (config + module) and add its entry to
:data:`METHODS` below (or call :func:`register` from your own code) - see docs/adding-a-method.md.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from paravox.errors import ConfigError
from paravox.methods.base import MethodConfig, TrainingModule
from paravox.methods.dino import DINOConfig, DINOModule
from paravox.methods.learn2diss import Learn2DissConfig, Learn2DissModule
from paravox.methods.mgf import MGFConfig, MGFModule
from paravox.methods.simclr import SimCLRConfig, SimCLRModule
from paravox.methods.supervised import SupervisedConfig, SupervisedModule

COMMANDS = ("pretrain", "train-supervised")


@dataclass(frozen=True)
class MethodSpec:
    """What paravox needs to know about a training method (see the module docstring).

    ``exports``: bundle name -> state-dict prefix of an encoder inside the trained module, the
    default first (e.g. DINO: ``encoder`` = the teacher's backbone, ``student``); a method with
    several encoders (a frame and an utterance encoder) lists each. ``train_manifest``: the
    default training split of its recipes; ``labelled``: whether it needs labels.
    """

    name: str
    config: type[MethodConfig]
    module: type[TrainingModule]
    exports: dict[str, str]
    command: str = "pretrain"
    train_manifest: str = "data/demo/pretrain.jsonl"
    labelled: bool = False
    summary: str = ""
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if not self.exports:
            raise ConfigError(f"method '{self.name}': exports must name at least one encoder")
        if self.command not in COMMANDS:
            raise ConfigError(f"method '{self.name}': command '{self.command}' is not one of "
                              f"{COMMANDS}")

    @property
    def default_export(self) -> str:
        """The bundle ``paravox export`` writes when no other is asked for."""
        return next(iter(self.exports))


METHODS: dict[str, MethodSpec] = {}


def register(spec: MethodSpec, replace: bool = False) -> MethodSpec:
    """Add a method; a second entry under one name fails unless ``replace``."""
    if spec.name in METHODS and not replace and METHODS[spec.name] != spec:
        raise ConfigError(f"method '{spec.name}' is already registered")
    METHODS[spec.name] = spec
    return spec


def unregister(name: str) -> None:
    """Remove a method (tests that register a throw-away method clean up with it)."""
    METHODS.pop(name, None)


def get_method(name: str, where: str = "recipe") -> MethodSpec:
    """The entry of ``name``; an unknown name fails with the choices."""
    if name not in METHODS:
        raise ConfigError(f"method '{name}' (in {where}) is unknown; choose one of "
                          f"{sorted(METHODS)}")
    return METHODS[name]


def methods_for(command: str) -> list[str]:
    """The methods a CLI command runs."""
    return sorted(n for n, s in METHODS.items() if s.command == command)


for _spec in (
    MethodSpec("dino", DINOConfig, DINOModule,
               exports={"encoder": "teacher.encoder.", "student": "student.encoder."},
               summary="DINO for speech (Cho et al. 2022): EMA teacher, multi-crop, no labels"),
    MethodSpec("simclr", SimCLRConfig, SimCLRModule, exports={"encoder": "encoder."},
               summary="SimCLR: NT-Xent over two augmented crops"),
    MethodSpec("mgf", MGFConfig, MGFModule, exports={"encoder": "encoder."},
               summary="MGF (Zhao et al. 2021): frame reconstruction + phone-span InfoNCE + "
                       "utterance NT-Xent on one frame encoder"),
    MethodSpec("learn2diss", Learn2DissConfig, Learn2DissModule,
               exports={"both": "dual.", "frame": "dual.frame.", "utterance": "dual.utterance."},
               summary="Learn2Diss (Krishna and Ganapathy 2024): a HuBERT-style frame encoder "
                       "and a contrastive utterance encoder, disentangled by a CLUB MI penalty"),
    MethodSpec("supervised", SupervisedConfig, SupervisedModule, exports={"encoder": "encoder."},
               command="train-supervised", train_manifest="data/demo/train.jsonl",
               labelled=True, summary="supervised x-vector / ECAPA (softmax or AAM-softmax)"),
):
    register(_spec)
