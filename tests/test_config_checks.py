"""Bad config values fail when the config is built, with one line naming key and value and a
non-zero exit - never a traceback from inside training."""

from __future__ import annotations

import pytest

from paravox.cli.main import main


@pytest.mark.parametrize("override,message", [
    ("run.batch_size=-4", "run.batch_size=-4: must be >= 1"),
    ("run.precision=fp8", "run.precision='fp8': choose one of"),
    ("run.accelerator=tpu", "run.accelerator='tpu': choose one of"),
    ("dino.optim.lr=-1", "optim.lr=-1.0: must be > 0"),
    ("dino.optim.optimizer=lamb", "optim.optimizer='lamb'"),
    ("dino.head.n_prototypes=0", "head.n_prototypes=0: must be >= 1"),
    ("run.epochs=0", "run.epochs=0: must be >= 1"),
    ("dino.crops.long_seconds=0", "crops.long_seconds=0.0: must be > 0"),
    ("resume_from=/no/such.ckpt", "resume_from=/no/such.ckpt: checkpoint not found"),
])
def test_bad_value_is_one_line(tiny_corpus, tmp_path, capsys, override, message):
    root, _ = tiny_corpus
    code = main(["pretrain", "dino_demo", f"train_manifest={root}/pretrain.jsonl",
                 "eval_manifest=null", "trials=null", f"out_dir={tmp_path}/run", override])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and len(err.splitlines()) == 1, err


def test_gpu_on_a_cpu_machine_is_one_line(tiny_corpus, tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    root, _ = tiny_corpus
    code = main(["pretrain", "dino_demo", f"train_manifest={root}/pretrain.jsonl",
                 "eval_manifest=null", "trials=null", f"out_dir={tmp_path}/run",
                 "run.accelerator=gpu"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "no CUDA GPU is visible" in err and len(err.splitlines()) == 1


def test_training_logs_carry_no_noise(tiny_corpus, tmp_path, capfd):
    """No accelerator lines, adverts, model summary or deprecation warnings; -q drops the
    progress bar; --print-config shows the resolved recipe and trains nothing."""
    root, _ = tiny_corpus
    tiny = ["dino.encoder_settings.channels=16", "dino.encoder_settings.mfa_channels=48",
            "dino.encoder_settings.attention_channels=8", "dino.encoder_settings.se_channels=8",
            "dino.head.n_prototypes=64", "dino.head.hidden_dim=32", "dino.head.bottleneck_dim=16",
            "run.epochs=1", "run.batch_size=8", "run.num_workers=0", "run.tensorboard=false"]
    args = ["pretrain", "dino_demo", f"train_manifest={root}/pretrain.jsonl",
            "eval_manifest=null", "trials=null", f"out_dir={tmp_path}/run", *tiny]
    assert main([*args, "-q"]) == 0
    out, err = capfd.readouterr()
    text = out + err
    for noise in ("GPU available", "TPU available", "Tip:", "FLOPs", "deprecated",
                  "Trainable params"):
        assert noise not in text, noise
    # the precision line comes once per process (a study trains many runs): the first run
    # of a test session prints it; DINO says in one line how it fitted its teacher's
    # averaging to this 8-step run
    lines = [ln for ln in out.strip().splitlines() if not ln.startswith("precision: ")]
    assert lines[0].startswith("dino.momentum_start 0.996 -> ") and "8-step run" in lines[0]
    assert lines[1].startswith("trained ") and len(lines) == 2, out
    assert main([*args, "run.seed=7", "--print-config"]) == 0
    printed = capfd.readouterr().out
    assert "seed: 7" in printed and "method: dino" in printed and "n_prototypes: 64" in printed
