"""`paravox export` never unpickles code: a crafted checkpoint fails with one line and runs
nothing (checkpoints are read with ``torch.load(weights_only=True)``)."""

from __future__ import annotations

import os

import torch

from paravox.cli.main import main


class _Payload:
    """Unpickling this calls os.system: what a crafted checkpoint would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_crafted_checkpoint_runs_no_code(tmp_path, capsys):
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    (run / "config.yaml").write_text("method: simclr\nsimclr:\n  encoder: ecapa\n"
                                     "  encoder_settings: {}\n  features: {}\n")
    marker = tmp_path / "pwned"
    torch.save({"state_dict": {}, "evil": _Payload(marker)}, run / "checkpoints" / "last.ckpt")
    assert main(["export", str(run), "-o", str(tmp_path / "bundle")]) == 2
    assert not marker.exists()
    err = capsys.readouterr().err
    assert "not a readable paravox checkpoint" in err and "last.ckpt" in err
    assert len(err.strip().splitlines()) == 1
    (run / "checkpoints" / "last.ckpt").write_bytes(b"garbage")
    assert main(["export", str(run), "-o", str(tmp_path / "bundle")]) == 2
    assert not marker.exists()
