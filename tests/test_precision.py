"""Mixed precision: ``run.precision=auto`` resolves to what the hardware computes natively and
says so; under bf16 autocast the numerically sensitive parts (DINO loss and prototype scores,
the centre, the EMA teacher, batch-norm statistics, AAM-softmax margins) stay float32."""

import os
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from omegaconf import OmegaConf

from paravox.data.manifest import Manifest
from paravox.methods.dino import DINOConfig, DINOModule
from paravox.models.heads import DINOHead, DINOHeadConfig
from paravox.objectives.dino_loss import DINOLoss
from paravox.objectives.margin import AAMSoftmax
from paravox.training import engine
from paravox.training.engine import RunConfig, crop_loader, fit, resolve_precision, steps_per_epoch
from paravox.utils.config import build_config
from test_dino_method import SMALL

BF16 = dict(device_type="cpu", dtype=torch.bfloat16)


def test_auto_follows_the_cpu(monkeypatch):
    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", "cpu")[0] == "bf16-mixed"
    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: False)
    value, why = resolve_precision("auto", "cpu")
    assert value == "32-true" and "no native bf16" in why
    assert resolve_precision("16-mixed", "cpu") == ("16-mixed", "set by run.precision")
    run = RunConfig()  # resolved when the config is built; the setting itself stays auto
    assert (run.precision, run.resolved_precision) == ("auto", "32-true")
    assert "no native bf16" in run.precision_reason


def test_this_machines_answer_matches_its_cpu_flags():
    if not Path("/proc/cpuinfo").is_file():
        pytest.skip("no /proc/cpuinfo")
    flags = Path("/proc/cpuinfo").read_text()
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    isa_limit = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if isa_limit and isa_limit not in engine._BF16_ISAS:
        native = False  # an imitated machine without bf16
    assert engine.cpu_has_native_bf16() == native


@pytest.mark.parametrize("isa", ["AVX2", "avx512_core", "SSE41"])
def test_a_onednn_isa_limit_below_bf16_means_no_native_bf16(monkeypatch, isa):
    """ONEDNN_MAX_CPU_ISA=AVX2 imitates a CPU without bf16: auto must then choose float32."""
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", isa)
    assert not engine.cpu_has_native_bf16()
    assert resolve_precision("auto", "cpu")[0] == "32-true"


def test_a_onednn_isa_limit_that_keeps_bf16_defers_to_the_cpu(monkeypatch):
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX512_CORE_AMX")
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: True, raising=False)
    assert engine.cpu_has_native_bf16()


def test_dino_loss_is_float32_and_unchanged_under_autocast():
    torch.manual_seed(0)
    student = [torch.randn(4, 64) for _ in range(6)]
    teacher = [torch.randn(4, 64) for _ in range(2)]
    ref = DINOLoss(64)
    expected = ref(student, teacher, 0.04)
    loss_fn = DINOLoss(64)
    with torch.autocast(**BF16):
        got = loss_fn([s.bfloat16() for s in student], [t.bfloat16() for t in teacher], 0.04)
    assert got.dtype == torch.float32 and loss_fn.center.dtype == torch.float32
    # bf16 inputs -> only the inputs' rounding differs, the loss arithmetic is float32
    rounded = DINOLoss(64)([s.bfloat16().float() for s in student],
                           [t.bfloat16().float() for t in teacher], 0.04)
    torch.testing.assert_close(got, rounded, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(got, expected, rtol=2e-2, atol=0)


def test_prototype_scores_are_float32_under_autocast():
    torch.manual_seed(0)
    head = DINOHead(32, DINOHeadConfig(hidden_dim=64, bottleneck_dim=16, n_prototypes=256))
    x = torch.randn(8, 32)
    with torch.autocast(**BF16):
        z = head.mlp(x)
        scores = head.logits(z)
    assert z.dtype == torch.bfloat16  # the MLP runs in bf16...
    assert scores.dtype == torch.float32  # ...the cosines to the prototypes do not
    w = F.normalize(head.last_layer.v, dim=1)
    torch.testing.assert_close(scores, F.normalize(z.float(), dim=-1) @ w.T)


def test_aam_margin_is_float32_under_autocast():
    torch.manual_seed(0)
    aam = AAMSoftmax(16, 5, margin=0.2, scale=30.0)
    x, y = torch.randn(6, 16), torch.randint(0, 5, (6,))
    expected, _ = aam(x, y)
    with torch.autocast(**BF16):
        loss, logits = aam(x.bfloat16(), y)
    assert loss.dtype == torch.float32 and logits.dtype == torch.float32
    torch.testing.assert_close(loss, aam(x.bfloat16().float(), y)[0])
    torch.testing.assert_close(loss, expected, rtol=2e-2, atol=0)


def test_a_bf16_run_keeps_weights_teacher_and_batch_norm_in_float32(tiny_corpus, tmp_path,
                                                                    capsys, monkeypatch):
    """A real 2-step DINO run with precision auto on a (simulated) bf16 CPU: the resolved
    config and the run's first line say bf16-mixed; every parameter and buffer stays float32,
    the teacher moved by EMA and the batch-norm running statistics were updated."""
    monkeypatch.setattr(engine, "cpu_has_native_bf16", lambda: True)
    monkeypatch.setattr(engine, "_PRECISION_SAID", set())
    warnings.filterwarnings("ignore")
    root, _ = tiny_corpus
    m = Manifest.load(root / "pretrain.jsonl")
    cfg = build_config(DINOConfig, overrides=SMALL)
    run = build_config(RunConfig, overrides=["epochs=1", "max_steps=2", "batch_size=4",
                                             "num_workers=0", "tensorboard=false",
                                             "progress_bar=false"])
    assert run.resolved_precision == "bf16-mixed" and run.precision_reason.startswith("auto")
    text = OmegaConf.to_yaml(OmegaConf.structured(run))
    assert "precision: auto" in text and "resolved_precision: bf16-mixed" in text
    module = DINOModule(cfg, steps_per_epoch(len(m), run), run.epochs)
    teacher0 = {k: v.clone() for k, v in module.teacher.state_dict().items()}
    fit(module, crop_loader(m, cfg, run), tmp_path / "run", run)
    assert "precision: bf16-mixed (auto: this CPU has native bf16" in capsys.readouterr().out
    for name, t in list(module.state_dict().items()):
        if t.is_floating_point():
            assert t.dtype == torch.float32, name
    after = module.teacher.state_dict()
    moved = [k for k in teacher0 if "running_mean" in k
             and not torch.equal(teacher0[k], after[k])]
    assert moved, "batch-norm statistics were not updated"
    assert any(not torch.equal(teacher0[k], after[k]) for k in teacher0 if "weight" in k)
    assert torch.isfinite(module.loss_fn.center).all()


def _losses():
    from paravox.objectives.contrastive import nt_xent
    from paravox.objectives.redundancy import (
        barlow_twins_loss,
        byol_regression_loss,
        vicreg_loss,
    )
    from paravox.objectives.regularisers import covariance_penalty, variance_penalty
    from paravox.objectives.supcon import supcon_loss
    from paravox.objectives.triplet import cosine_triplet_loss

    labels = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    return {
        "nt_xent": lambda a, b, c: nt_xent(a, b, temperature=0.07),
        "barlow_twins": lambda a, b, c: barlow_twins_loss(a, b),
        "vicreg": lambda a, b, c: vicreg_loss(a, b),
        "byol": lambda a, b, c: byol_regression_loss(a, b),
        "supcon": lambda a, b, c: supcon_loss(a, labels, temperature=0.07),
        "triplet": lambda a, b, c: cosine_triplet_loss(a, b, c),
        "variance": lambda a, b, c: variance_penalty(a),
        "covariance": lambda a, b, c: covariance_penalty(a),
    }


@pytest.mark.parametrize("name", list(_losses()))
def test_every_loss_computes_in_float32_under_autocast(name):
    """bf16 activations into a loss under autocast give exactly the float32 loss of the same
    (rounded) activations: no matrix product inside the loss is lowered to bf16."""
    fn = _losses()[name]
    torch.manual_seed(0)
    a, b, c = (torch.randn(8, 32).bfloat16() for _ in range(3))
    with torch.autocast(**BF16):
        got = fn(a, b, c)
    expected = fn(a.float(), b.float(), c.float())
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-6)


def test_the_resolved_precision_does_not_block_a_resume_elsewhere():
    """A config written where auto gave bf16-mixed resumes on a machine where it gives
    32-true: only the setting (auto) is compared, and it did not change."""
    from paravox.training.run_folder import config_changes

    a = "run:\n  precision: auto\n  resolved_precision: bf16-mixed\n"
    b = "run:\n  precision: auto\n  resolved_precision: 32-true\n"
    assert config_changes(a, b) == []
    assert config_changes(a, b.replace("auto", "32-true", 1))


def test_float32_loss_keeps_float64():
    from paravox.objectives.contrastive import nt_xent

    z = torch.randn(4, 8, dtype=torch.float64)
    assert nt_xent(z, z + 0.1).dtype == torch.float64
