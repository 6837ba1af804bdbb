"""Staged fine-tuning: in stage one only the embedding layer and the classifier change (the
frozen backbone's batch-norm statistics included); then everything trains."""

import warnings

import pytest
import torch

from paravox.inference import export_bundle
from paravox.inference.bundle import load_bundle_encoder
from paravox.transfer.finetune import FineTuneConfig, evaluate_finetuned, finetune
from test_inference import dino_run  # noqa: F401  (module fixture)

TINY = FineTuneConfig(crop_seconds=1.0, augment=False, stage1_epochs=1, stage2_epochs=1,
                      batch_size=8, num_workers=0)


def test_stage_one_changes_only_the_embedding_layer(dino_run, tmp_path):  # noqa: F811
    warnings.filterwarnings("ignore")
    run, _, root = dino_run
    bundle = export_bundle(run, tmp_path / "b")
    before = {k: v.clone() for k, v in load_bundle_encoder(bundle)[0].state_dict().items()}
    cfg = FineTuneConfig(**{**vars(TINY), "stage2_epochs": 0})
    module = finetune(bundle, root / "train.jsonl", "fluency", "staged", cfg, tmp_path / "ft")
    after = module.encoder.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(("embed.", "embed_norm.")) for k in changed), changed
    assert any(k.startswith("embed.") for k in changed)
    # stage two: the backbone trains as well
    module = finetune(bundle, root / "train.jsonl", "fluency", "staged", TINY, tmp_path / "ft2")
    after = module.encoder.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before
               if not k.startswith(("embed.", "embed_norm.")))


def test_evaluate_finetuned(dino_run, tmp_path):  # noqa: F811
    warnings.filterwarnings("ignore")
    run, _, root = dino_run
    bundle = export_bundle(run, tmp_path / "b")
    r = evaluate_finetuned(bundle, root / "train.jsonl", root / "test.jsonl", "fluency", "full",
                           TINY, tmp_path / "ft")
    assert r.protocol == "full" and r.classes == ["disfluent", "fluent"]
    assert r.metrics["confusion"].sum() == r.n_test and r.speaker_metrics is not None


def test_evaluate_classify_command_takes_finetune_settings(dino_run, tmp_path, capsys):  # noqa: F811
    import json

    from paravox.cli.main import main

    warnings.filterwarnings("ignore")
    run, _, root = dino_run
    bundle = export_bundle(run, tmp_path / "b")
    common = ["evaluate", "classify", str(bundle), "--task", "style", "--train",
              str(root / "train.jsonl"), "--test", str(root / "test.jsonl"), "-q"]
    assert main([*common, "--protocol", "staged", "-o", str(tmp_path / "out"), "--finetune",
                 "crop_seconds=1.0", "augment=false", "stage1_epochs=1", "stage2_epochs=1",
                 "batch_size=8", "num_workers=0"]) == 0
    rows = json.loads((tmp_path / "out/classify_results.json").read_text())
    assert rows[0]["protocol"] == "staged" and (tmp_path / "out/finetune/style_staged").is_dir()
    assert main([*common, "--protocol", "staged", "--finetune", "stage3_epochs=1"]) == 2
    assert "stage3_epochs" in capsys.readouterr().err


@pytest.mark.parametrize("device, accelerator", [("cpu", "cpu"), ("cuda", "gpu"),
                                                 ("cuda:1", "gpu"), ("mps", "auto")])
def test_evaluate_classify_fine_tunes_on_its_device(monkeypatch, tmp_path, device, accelerator):
    """``evaluate classify --device`` decides where fine-tuning trains, not only where
    embeddings are computed (a --finetune override still wins)."""
    from paravox.pipelines import evaluate

    seen = []

    class Stop(Exception):
        pass

    def capture(bundle, train, test, task, protocol, cfg, *args, **kwargs):
        seen.append(cfg.accelerator)
        raise Stop  # before any training

    monkeypatch.setattr(evaluate, "evaluate_finetuned", capture)
    with pytest.raises(Stop):
        evaluate.run_classify("b", "train.jsonl", "test.jsonl", ["style"], ["staged"], tmp_path,
                              device=device)
    with pytest.raises(Stop):
        evaluate.run_classify("b", "train.jsonl", "test.jsonl", ["style"], ["staged"], tmp_path,
                              ["accelerator=cpu"], device=device)
    assert seen == [accelerator, "cpu"]
