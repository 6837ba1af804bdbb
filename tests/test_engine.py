"""The training engine: rank-sharded sampling, exact mid-epoch resume, and 2-process DDP (gloo,
CPU) matching one process on the same global batch, for DINO and SimCLR."""

import dataclasses
import warnings

import lightning as L
import pytest
import torch
from torch.nn.modules.batchnorm import _BatchNorm

from paravox.data.dataset import EpochSampler, MultiCropDataset, ResumableLoader, collate_crops
from paravox.data.manifest import Manifest
from paravox.errors import ParavoxError
from paravox.methods.dino import DINOConfig, DINOModule
from paravox.methods.simclr import SimCLRConfig, SimCLRModule
from paravox.training.engine import (
    RunConfig,
    crop_loader,
    fit,
    seed_everything,
    steps_per_epoch,
)
from paravox.utils.config import build_config
from test_dino_method import SMALL

SMALL_ENCODER = [o for o in SMALL if o.startswith(("encoder_settings", "augment", "optim"))]


def test_sampler_shards_each_global_batch_across_ranks():
    single = list(EpochSampler(21, seed=3))
    ranks = [list(EpochSampler(21, seed=3, num_replicas=2, rank=r)) for r in (0, 1)]
    assert len(ranks[0]) == len(ranks[1]) == 10
    batch = 4  # per process; the single process uses 8
    for step in range(10 // batch):
        global_keys = single[8 * step: 8 * step + 8]
        ddp_keys = ranks[0][batch * step: batch * step + batch] + \
            ranks[1][batch * step: batch * step + batch]
        assert sorted(global_keys) == sorted(ddp_keys)
    with pytest.raises(ParavoxError, match="rank 2"):
        list(EpochSampler(4, num_replicas=2, rank=2))


def test_resumable_loader_skips_the_batches_done(tiny_corpus):
    root, _ = tiny_corpus
    m = Manifest.load(root / "pretrain.jsonl")
    ds = MultiCropDataset(m, build_config(DINOConfig, overrides=SMALL).crops)
    make = lambda: ResumableLoader(ds, batch_size=3, sampler=EpochSampler(len(ds), 1),  # noqa
                                   collate_fn=collate_crops, drop_last=True)
    full = make()
    full.sampler.set_epoch(2)
    ids = [b.ids for b in full]
    resumed = make()
    resumed.load_state_dict({"epoch": 2, "batches_done": 2})
    assert [b.ids for b in resumed] == ids[2:]
    at_end = make()
    at_end.load_state_dict({"epoch": 2, "batches_done": len(at_end)})
    assert at_end.sampler.epoch == 3
    with pytest.raises(ParavoxError, match="drop_last"):
        ResumableLoader(ds, batch_size=3, sampler=EpochSampler(len(ds)))


def _subset(root, tmp_path, n):
    m = Manifest.load(root / "pretrain.jsonl")
    m.rows = m.rows[:n]
    m.save(tmp_path / f"first{n}.jsonl")
    return Manifest.load(tmp_path / f"first{n}.jsonl")


def _state(path):
    ckpt = torch.load(path, weights_only=False)
    return {k: v for k, v in ckpt["state_dict"].items() if "num_batches_tracked" not in k}


def test_resume_mid_epoch_continues_exactly(tiny_corpus, tmp_path):
    """2 epochs of 4 steps straight vs. stop after 6 steps (mid-epoch 2) + resume."""
    root, _ = tiny_corpus
    warnings.filterwarnings("ignore")
    m = _subset(root, tmp_path, 16)
    cfg = build_config(DINOConfig, overrides=SMALL + ["freeze_prototypes_fraction=0.5"])
    run = RunConfig(epochs=2, batch_size=4, num_workers=0, checkpoint_every_n_steps=3,
                    tensorboard=False, progress_bar=False)

    def train(out, resume=None, max_steps=-1):
        r = dataclasses.replace(run, max_steps=max_steps)
        seed_everything(r.seed)
        module = DINOModule(cfg, steps_per_epoch(len(m), r), r.epochs)
        return fit(module, crop_loader(m, cfg, r), out, r, resume_from=resume)

    straight = train(tmp_path / "straight")
    assert straight.global_step == 8
    train(tmp_path / "killed", max_steps=6)
    ckpt = tmp_path / "killed/checkpoints/epoch=1-step=6.ckpt"
    assert ckpt.is_file()
    resumed = train(tmp_path / "resumed", resume=ckpt)
    assert resumed.global_step == 8
    a = _state(tmp_path / "straight/checkpoints/last.ckpt")
    b = _state(tmp_path / "resumed/checkpoints/last.ckpt")
    assert a.keys() == b.keys() and "loss_fn.center" in a
    for k in a:  # student, teacher, centre
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-6, msg=k)


class FreezeBatchNorm(L.Callback):
    """BatchNorm in eval mode: per-item computation, so DDP (no SyncBatchNorm on CPU) and one
    process compute the same function of the global batch."""

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
        for mod in pl_module.modules():
            if isinstance(mod, _BatchNorm):
                mod.eval()


@pytest.mark.parametrize("method", ["dino", "simclr"])
def test_two_process_ddp_matches_one_process(method, tiny_corpus, tmp_path):
    root, _ = tiny_corpus
    warnings.filterwarnings("ignore")
    m = _subset(root, tmp_path, 16)
    # SGD: Adam would turn float noise in exactly-zero gradients (e.g. the bias before the
    # attention softmax, which is shift-invariant) into lr-sized steps
    common = ["specaugment.prob=0.0", "optim.optimizer=sgd", "optim.lr=0.05"]
    if method == "dino":
        cfg_cls, module_cls, extra = DINOConfig, DINOModule, SMALL
    else:
        cfg_cls, module_cls = SimCLRConfig, SimCLRModule
        extra = SMALL_ENCODER + ["crops.long_seconds=1.0", "projector_hidden=32",
                                 "projector_dim=16"]
    cfg = build_config(cfg_cls, overrides=extra + common)

    def train(out, batch_size, devices):
        run = RunConfig(epochs=1, batch_size=batch_size, num_workers=0, devices=devices,
                        accelerator="cpu", strategy="ddp_spawn" if devices > 1 else "auto",
                        checkpoint_every_n_steps=100, tensorboard=False, progress_bar=False,
                        precision="32-true")  # the same sums in another order: float32
        seed_everything(run.seed)
        module = module_cls(cfg, steps_per_epoch(len(m), run), run.epochs)
        fit(module, crop_loader(m, cfg, run), out, run, callbacks=[FreezeBatchNorm()])
        assert torch.load(out / "checkpoints/last.ckpt", weights_only=False)["global_step"] == 2
        return _state(out / "checkpoints/last.ckpt")

    one = train(tmp_path / "one", batch_size=8, devices=1)
    two = train(tmp_path / "two", batch_size=4, devices=2)
    seed_everything(0)
    initial = module_cls(cfg, 1, 1).state_dict()
    moved = [k for k in one if k in initial and not torch.equal(one[k], initial[k])]
    assert len(moved) > 10  # training changed the weights...
    for k in one:  # ...identically in both runs
        torch.testing.assert_close(one[k], two[k], rtol=1e-4, atol=1e-5, msg=k)
