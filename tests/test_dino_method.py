"""DINO method contract: shapes, schedules, frozen prototypes, EMA teacher, loss decreases."""

import csv
import warnings

import lightning as L
import numpy as np
import pytest
import torch

from paravox.data.dataset import EpochSampler
from paravox.data.manifest import Manifest
from paravox.methods.dino import (
    DINOConfig,
    DINOModule,
    budget_momentum_start,
    teacher_init_share,
)
from paravox.training.engine import RunConfig, crop_loader, fit, steps_per_epoch
from paravox.utils.config import build_config
from paravox.utils.schedules import cosine_schedule

SMALL = ["encoder_settings.channels=32", "encoder_settings.mfa_channels=96",
         "encoder_settings.attention_channels=16", "encoder_settings.se_channels=16",
         "head.hidden_dim=64", "head.bottleneck_dim=16", "head.n_prototypes=128",
         "crops.long_seconds=1.0", "crops.short_seconds=0.5", "optim.warmup_epochs=0",
         "warmup_teacher_temp_fraction=0.1", "optim.optimizer=adamw", "optim.lr=0.003",
         "optim.weight_decay=0.0", "optim.weight_decay_end=0.0", "augment.reverb_prob=0.0",
         "augment.n_babble=2"]


def small_config(*extra):
    return build_config(DINOConfig, overrides=SMALL + list(extra))


def test_views_and_shapes(tiny_corpus):
    root, _ = tiny_corpus
    cfg = small_config()
    m = Manifest.load(root / "pretrain.jsonl")
    batch = next(iter(crop_loader(m, cfg, RunConfig(batch_size=4, num_workers=0))))
    module = DINOModule(cfg, steps_per_epoch=10, max_epochs=2)
    s_logits, s_emb, _ = module._forward_views(module.student, batch.groups, augment=True)
    t_logits, _, _ = module._forward_views(module.teacher, batch.groups[:1], augment=False)
    assert len(s_logits) == cfg.crops.n_long + cfg.crops.n_short and len(t_logits) == 2
    assert all(x.shape == (4, 128) for x in s_logits + t_logits)
    assert s_emb.shape == (4 * 6, 192)


def test_schedules_follow_the_step():
    module = DINOModule(small_config("optim.lr=0.1", "optim.min_lr=0.0", "optim.warmup_epochs=1",
                                     "warmup_teacher_temp_fraction=0.4",
                                     "max_teacher_init_share=1.0"),
                        steps_per_epoch=10, max_epochs=5)
    assert module.lr_at(0) == 0.0 and module.lr_at(10) == pytest.approx(0.1)
    assert module.lr_at(50) == pytest.approx(0.0)
    assert module.momentum(0) == pytest.approx(0.996) and module.momentum(50) == 1.0
    # the warm-up is a share of the run's 50 steps: 20 steps
    assert module.teacher_temp(0) == pytest.approx(0.04)
    assert module.teacher_temp(10) == pytest.approx(0.055)
    assert module.teacher_temp(20) == pytest.approx(0.07)
    # a warm-up given as a share of the run replaces the one in epochs
    frac = DINOModule(small_config("optim.warmup_epochs=3", "optim.warmup_fraction=0.1"),
                      steps_per_epoch=10, max_epochs=5)
    assert frac.warmup_steps() == 5 and frac.lr_at(5) == pytest.approx(0.003)


def test_teacher_averaging_fits_the_budget(capsys):
    """0.996 -> 1 over a short run leaves the teacher mostly random; the start momentum is
    lowered (and said so) until it keeps at most max_teacher_init_share, and a long run keeps
    the paper's value. The share is the product of the momenta, checked against a loop."""
    assert teacher_init_share(0.996, 1.0, 200) == pytest.approx(
        np.prod([cosine_schedule(t, 200, 0.996, 1.0) for t in range(200)]))
    assert teacher_init_share(0.996, 1.0, 200) == pytest.approx(0.67, abs=0.01)
    short = DINOModule(small_config(), steps_per_epoch=50, max_epochs=4)
    assert short.momentum_start < 0.996
    assert teacher_init_share(short.momentum_start, 1.0, 200) == pytest.approx(1e-3, rel=1e-3)
    assert "dino.momentum_start 0.996 -> 0.93" in capsys.readouterr().out
    assert budget_momentum_start(0.996, 1.0, 100_000, 1e-3) == 0.996
    # no bound: the paper's value, and a warning naming the setting when it stays > 5 %
    with pytest.warns(UserWarning, match="max_teacher_init_share"):
        free = DINOModule(small_config("max_teacher_init_share=1.0"), 50, 4)
    assert free.momentum_start == 0.996
    with pytest.raises(Exception, match="teacher_temp=0.0"):
        small_config("teacher_temp=0.0")


def test_teacher_is_the_ema_of_the_student_after_each_step(tiny_corpus, tmp_path,
                                                          monkeypatch):
    """The EMA runs after the optimiser step, from the student that step made: after k steps
    the teacher equals t_k = m_k t_(k-1) + (1 - m_k) s_k, computed here from the students
    recorded after each step (an update before backward would use s_(k-1))."""
    root, _ = tiny_corpus
    warnings.filterwarnings("ignore")
    m = Manifest.load(root / "pretrain.jsonl")
    m.rows = m.rows[:8]
    m.save(tmp_path / "eight.jsonl")
    cfg = small_config()
    run = RunConfig(epochs=4, batch_size=8, num_workers=0, precision="32-true",
                    checkpoint_every_n_steps=100)
    module = DINOModule(cfg, steps_per_epoch(len(m), run), run.epochs)
    t = [p.detach().clone() for p in module.teacher.parameters()]
    students = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            students.append([p.detach().clone() for p in pl_module.student.parameters()])

    fit(module, crop_loader(m, cfg, run), tmp_path / "run", run, callbacks=[Record()])
    assert len(students) == 4
    for k, s in enumerate(students):
        mk = module.momentum(k)
        t = [mk * a + (1 - mk) * b for a, b in zip(t, s)]
    for got, want in zip(module.teacher.parameters(), t):
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_few_steps_lower_the_loss_and_teacher_follows_by_ema(tiny_corpus, tmp_path,
                                                             monkeypatch):
    root, _ = tiny_corpus
    warnings.filterwarnings("ignore")
    # one fixed batch: 8 utterances, batch 8, and the sampler kept at epoch 0, so every step
    # sees the same crops and the loss must fall
    monkeypatch.setattr(EpochSampler, "set_epoch", lambda self, epoch: None)
    m = Manifest.load(root / "pretrain.jsonl")
    m.rows = m.rows[:8]
    m.save(tmp_path / "eight.jsonl")
    cfg = small_config("freeze_prototypes_fraction=0.2")
    run = RunConfig(epochs=6, batch_size=8, num_workers=0, checkpoint_every_n_steps=100)
    module = DINOModule(cfg, steps_per_epoch(len(m), run), run.epochs)
    trainer = fit(module, crop_loader(m, cfg, run), tmp_path / "run", run)
    with open(tmp_path / "run/logs/version_0/metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    losses = [float(r["train/loss"]) for r in rows if r.get("train/loss")]
    assert len(losses) == 6 and losses[-1] < losses[0]
    assert trainer.global_step == 6
    # the teacher moved towards the student (EMA) but is not a copy of it
    s = torch.cat([p.flatten() for p in module.student.parameters()])
    t = torch.cat([p.flatten() for p in module.teacher.parameters()])
    t0 = torch.cat([p.flatten() for p in DINOModule(cfg, 1, 6).teacher.parameters()])
    assert not torch.equal(s, t) and not torch.equal(t, t0)
    assert (tmp_path / "run/checkpoints/last.ckpt").is_file()


def test_prototypes_get_no_gradient_at_first():
    module = DINOModule(small_config("freeze_prototypes_fraction=0.5"), steps_per_epoch=10,
                        max_epochs=2)
    module.student["head"](torch.randn(4, 192)).square().sum().backward()
    module.on_after_backward()  # global_step 0, within the first half of the run
    head = module.student["head"]
    assert head.last_layer.v.grad is None
    assert all(p.grad is not None for p in head.mlp.parameters())


def test_pretrain_command_runs_a_recipe_and_reports_eer(tiny_corpus, tmp_path, capsys):
    from paravox.cli.main import main

    root, _ = tiny_corpus
    warnings.filterwarnings("ignore")
    args = ["pretrain", "recipes/dino_demo.yaml", f"train_manifest={root}/pretrain.jsonl",
            f"eval_manifest={root}/test.jsonl", f"trials={root}/trials.txt",
            f"out_dir={tmp_path}/run", "run.epochs=1", "run.max_steps=2", "run.batch_size=4",
            "run.num_workers=0", *[f"dino.{o}" for o in SMALL]]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "trained 2 steps" in out and "dino cosine EER" in out
    assert (tmp_path / "run/config.yaml").is_file()
    assert main(["pretrain", "recipes/dino_demo.yaml", "dino.lrr=1"]) == 2
    assert "dino.lrr" in capsys.readouterr().err
    assert main(["pretrain", "recipes/dino_demo.yaml", f"train_manifest={root}/pretrain.jsonl",
                 f"eval_manifest={root}/test.jsonl", "trials=/nonexistent/trials.txt"]) == 2
    assert "trials=/nonexistent/trials.txt: file not found" in capsys.readouterr().err
    assert main(["pretrain", "recipes/xvector_demo.yaml"]) == 2
    assert "paravox train-supervised" in capsys.readouterr().err
