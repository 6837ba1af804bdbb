"""Adding a method takes one module and one registry entry, and the engine supports what the
next methods need: several named encoders (each exportable), several optimisers with their own
schedules (manual optimisation), and multi-stage recipes resumable per stage.

The method below is a throw-away written for this test the way a real one is written: a
config dataclass, a TrainingModule, one ``register(MethodSpec(...))``. Two encoders learn by
NT-Xent; a critic learns by its own optimiser to predict encoder B's embedding from encoder
A's; in the ``joint`` stage the encoders are also pushed to defeat the critic.
"""

from __future__ import annotations

import csv
import shutil
import warnings
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
from torch import nn

from paravox.cli.main import main
from paravox.data.crops import CropConfig
from paravox.inference import Embedder, export_bundle
from paravox.models import build_encoder
from paravox.objectives.contrastive import nt_xent
from paravox.training.module import EncoderExport, EncoderMethodConfig, OptimConfig, TrainingModule
from paravox.training.recipes import load_recipe, run_recipe
from paravox.training.registry import MethodSpec, get_method, register, unregister
from test_baselines import first_rows

TINY = {"channels": 16, "mfa_channels": 48, "attention_channels": 8, "se_channels": 8,
        "embedding_dim": 16}


@dataclass
class PairConfig(EncoderMethodConfig):
    encoder_settings: dict = field(default_factory=lambda: dict(TINY))
    crops: CropConfig = field(default_factory=lambda: CropConfig(n_long=2, long_seconds=1.0,
                                                                 n_short=0))
    optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        optimizer="adamw", lr=3e-3, min_lr=1e-4, warmup_epochs=0))
    critic_optim: OptimConfig = field(default_factory=lambda: OptimConfig(
        optimizer="adamw", lr=1e-2, min_lr=1e-2, warmup_epochs=0, weight_decay=0.0,
        weight_decay_end=0.0))
    adversarial_weight: float = 0.0

    def exports(self):
        return {n: EncoderExport(f"encoder_{n}.", self.encoder, dict(self.encoder_settings))
                for n in ("a", "b")}


class PairModule(TrainingModule):
    """Two encoders + a critic with its own optimiser."""

    def __init__(self, cfg: PairConfig, steps_per_epoch: int, max_epochs: int):
        super().__init__(cfg, steps_per_epoch, max_epochs)
        self.automatic_optimization = False
        self.encoder_a = build_encoder("ecapa", n_mels=cfg.features.n_mels,
                                       **cfg.encoder_settings)
        self.encoder_b = build_encoder("ecapa", n_mels=cfg.features.n_mels,
                                       **cfg.encoder_settings)
        d = self.encoder_a.embedding_dim
        self.critic = nn.Linear(d, d)

    def trainable(self) -> nn.Module:
        return nn.ModuleList([self.encoder_a, self.encoder_b])

    def parameter_sets(self):
        return {"encoders": (self.trainable(), self.cfg.optim),
                "critic": (self.critic, self.cfg.critic_optim)}

    def embedding_encoder(self) -> nn.Module:
        return self.encoder_a

    def training_step(self, batch, batch_idx):
        views = batch.groups[0]
        v, b, n = views.shape
        feats = self.features(views.reshape(v * b, n), True)
        za, zb = self.encoder_a(feats).embedding, self.encoder_b(feats).embedding
        critic_loss = (self.critic(za.detach()) - zb.detach()).square().mean()
        self.optimizer_step_on("critic", critic_loss)
        fool = -(self.critic(za) - zb).square().mean()
        loss = (nt_xent(*za.chunk(2), 0.1) + nt_xent(*zb.chunk(2), 0.1)
                + self.cfg.adversarial_weight * fool)
        self.optimizer_step_on("encoders", loss)
        lrs = [o.optimizer.param_groups[0]["lr"] for o in self.optimizers()]
        self.log_dict({"train/loss": loss.detach(), "train/critic": critic_loss.detach(),
                       "sched/lr_encoders": lrs[0], "sched/lr_critic": lrs[1]}, batch_size=b)


@pytest.fixture
def pair_method():
    spec = register(MethodSpec("pair", PairConfig, PairModule))
    yield spec
    unregister("pair")


def _recipe(tmp_path, root, stages=True):
    first_rows(root / "pretrain.jsonl", tmp_path / "train.jsonl", 24)
    overrides = ["method=pair", f"train_manifest={tmp_path / 'train.jsonl'}",
                 f"out_dir={tmp_path / 'run'}", "run.epochs=2", "run.batch_size=8",
                 "run.num_workers=0", "run.tensorboard=false", "run.progress_bar=false",
                 "run.babble_utterances=4", "pair.augment.reverb_prob=0.0",
                 "pair.augment.n_babble=2"]
    if stages:
        overrides += ["stages=[{name: separate}, {name: joint, set: "
                      "[pair.adversarial_weight=0.5, run.epochs=1]}]"]
    return load_recipe(None, overrides)


def _metrics(run_dir):
    with open(run_dir / "logs" / "version_0" / "metrics.csv") as fh:
        return list(csv.DictReader(fh))


def test_registry_entry_is_enough_and_names_unknown_methods(pair_method):
    assert get_method("pair") is pair_method
    with pytest.raises(Exception, match="unknown; choose one of"):
        get_method("nosuch")
    assert main(["pretrain", "nosuch_recipe.yaml"]) == 2


def test_two_encoders_two_optimisers_two_stages(pair_method, tiny_corpus, tmp_path,
                                                monkeypatch, capsys):
    warnings.filterwarnings("ignore")
    root, _ = tiny_corpus
    recipe = _recipe(tmp_path, root)
    seen = {}
    original = PairModule.load_stage_state

    def spy(self, state, previous):
        seen["state"], seen["previous"] = {k: v.clone() for k, v in state.items()}, previous
        original(self, state, previous)

    monkeypatch.setattr(PairModule, "load_stage_state", spy)
    result = run_recipe(recipe)
    run = tmp_path / "run"
    s1, s2 = run / "stages" / "1_separate", run / "stages" / "2_joint"
    assert [r["stage"] for r in result["stages"]] == ["separate", "joint"]
    # steps are batches: 3 per epoch (Lightning's global_step counts both optimisers)
    assert [r["steps"] for r in result["stages"]] == [6, 3]

    # stage 2 started from stage 1's final weights, critic included
    assert seen["previous"] == "separate"
    final1 = torch.load(s1 / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    assert all(torch.equal(seen["state"][k], final1[k]) for k in final1)

    # each optimiser follows its own schedule: encoders cosine-decay, critic constant
    rows = [r for r in _metrics(s1) if r.get("sched/lr_encoders")]
    enc = [float(r["sched/lr_encoders"]) for r in rows]
    crit = [float(r["sched/lr_critic"]) for r in rows]
    assert enc[0] == pytest.approx(3e-3) and enc[-1] < enc[0] and enc == sorted(enc)[::-1]
    assert crit == pytest.approx([1e-2] * len(crit))
    # both optimisers changed their parameters in stage 2
    final2 = torch.load(s2 / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for prefix in ("encoder_a.", "encoder_b.", "critic."):
        assert any(not torch.equal(final1[k], final2[k]) for k in final2
                   if k.startswith(prefix) and final2[k].is_floating_point()), prefix

    # each named encoder exports as a bundle; the run folder means the last stage
    wave = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.1
    for name, prefix in (("a", "encoder_a."), ("b", "encoder_b.")):
        bundle = export_bundle(run, tmp_path / f"bundle_{name}", which=name)
        module = result["module"]
        own = getattr(module, prefix[:-1]).eval()
        got = Embedder.from_bundle(bundle).embed(wave)
        with torch.no_grad():
            want = own(module.fbank(torch.from_numpy(wave[None]))[0]).embedding[0].numpy()
        np.testing.assert_allclose(got, want, atol=1e-5)
    assert main(["export", str(run), "-o", str(tmp_path / "bundle_c"), "--which", "c"]) == 2
    assert "exports ['a', 'b']" in capsys.readouterr().err

    # re-running skips finished stages; an interrupted stage resumes from its checkpoint
    capsys.readouterr()
    again = run_recipe(_recipe(tmp_path, root))
    assert all(r.get("skipped") for r in again["stages"])
    (s2 / "run_done.json").unlink()
    resumed = run_recipe(_recipe(tmp_path, root))
    out = capsys.readouterr().out
    assert "'separate': done earlier" in out and "resuming from" in out
    assert resumed["stages"][1]["steps"] == 3
    # a changed stage config is refused, not silently mixed with the finished stage
    changed = _recipe(tmp_path, root)
    changed.stages[0].set = ["run.seed=5"]
    with pytest.raises(Exception, match="holds a run trained with another config"):
        run_recipe(changed)

    # a step checkpoint (saved by a callback at a batch's end) counts that batch, so the
    # schedules of a resumed manual-optimisation run continue where they stopped
    probe = PairModule(PairConfig(), 1, 1)
    probe._batches_seen, probe._in_batch = 5, True  # inside batch 6's end hooks
    saved = {}
    probe.on_save_checkpoint(saved)
    assert saved["paravox_batches_seen"] == 6
    probe._in_batch = False  # after them (the end-of-training save)
    probe.on_save_checkpoint(saved)
    assert saved["paravox_batches_seen"] == 5

    # --resume with more stage-1 epochs: stage 1 continues, and stage 2, which was trained
    # from the old stage 1, is trained again from the new one (also when it never started)
    shutil.rmtree(s2)
    longer = _recipe(tmp_path, root)
    longer.stages[0].set = ["run.epochs=3"]
    capsys.readouterr()
    again = run_recipe(longer, mode="resume")
    assert [r["steps"] for r in again["stages"]] == [9, 3]
    assert "resuming from" in capsys.readouterr().out


def test_several_optimisers_need_manual_optimisation(pair_method):
    module = PairModule(PairConfig(), 1, 1)
    module.automatic_optimization = True
    with pytest.raises(Exception, match="need automatic_optimization = False"):
        module.configure_optimizers()
