"""Methods: one module per SSL/supervised method, composing encoders, heads and objectives,
and one registry entry each (below). Importing this package registers them; the registry
(:mod:`paravox.training.registry`) does so the first time a method is looked up."""

from paravox.methods.dino import DINOConfig, DINOModule
from paravox.methods.learn2diss import Learn2DissConfig, Learn2DissModule
from paravox.methods.mgf import MGFConfig, MGFModule
from paravox.methods.simclr import SimCLRConfig, SimCLRModule
from paravox.methods.supervised import SupervisedConfig, SupervisedModule
from paravox.training.registry import MethodSpec, register

# one entry per method: its name (the recipe's `method:`), config, module and command
register(MethodSpec("dino", DINOConfig, DINOModule))
register(MethodSpec("simclr", SimCLRConfig, SimCLRModule))
register(MethodSpec("mgf", MGFConfig, MGFModule))
register(MethodSpec("learn2diss", Learn2DissConfig, Learn2DissModule))
register(MethodSpec("supervised", SupervisedConfig, SupervisedModule,
                    command="train-supervised", train_manifest="data/demo/train.jsonl"))
