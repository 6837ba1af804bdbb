"""Classification transfer on frozen embeddings: probes, speaker-level decisions, the command."""

import json
import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from paravox.errors import ConfigError
from paravox.evaluation.classify import evaluate_frozen, speaker_level
from paravox.inference import export_bundle
from test_inference import dino_run  # noqa: F401  (module fixture)


def rows(speakers):
    return [SimpleNamespace(speaker=s) for s in speakers]


def test_probes_separate_separable_classes():
    rng = np.random.default_rng(0)
    centres = rng.standard_normal((3, 16)) * 3
    y = rng.integers(0, 3, 300)
    x = centres[y] + rng.standard_normal((300, 16))
    names = np.array(["a", "b", "c"])
    for protocol in ("linear", "mlp"):
        r = evaluate_frozen(x[:200], list(names[y[:200]]), x[200:], list(names[y[200:]]),
                            rows(["s"] * 100), "toy", protocol)
        assert r.metrics["accuracy"] > 0.95 and r.classes == ["a", "b", "c"]
        assert r.speaker_metrics is None  # one "speaker" with several labels
    with pytest.raises(ConfigError, match="never occur"):
        evaluate_frozen(x[:10], ["a"] * 10, x[:2], ["a", "z"], rows(["s", "t"]), "toy",
                        "linear")


def test_speaker_level_decisions_average_posteriors():
    proba = np.array([[0.9, 0.1], [0.4, 0.6], [0.45, 0.55], [0.2, 0.8], [0.3, 0.7]])
    y = np.array([0, 0, 0, 1, 1])
    r = speaker_level(rows(["a", "a", "a", "b", "b"]), proba, y, 2)
    # speaker a: mean posterior [0.58, 0.42] -> class 0 although 2 of 3 utterances say 1
    assert r["accuracy"] == 1.0 and r["n_speakers"] == 2
    assert speaker_level(rows(["a", "a", "b", "b", "b"]), proba, y, 2) is None


def test_evaluate_classify_command(dino_run, tmp_path, capsys):  # noqa: F811
    from paravox.cli.main import main

    warnings.filterwarnings("ignore")
    run, _, root = dino_run
    bundle = export_bundle(run, tmp_path / "b")
    assert main(["evaluate", "classify", str(bundle), "--task", "fluency", "style",
                 "--protocol", "linear", "mlp", "--train", str(root / "train.jsonl"),
                 "--test", str(root / "test.jsonl"), "-o", str(tmp_path / "c"), "-q"]) == 0
    results = json.loads((tmp_path / "c/classify_results.json").read_text())
    assert [(r["task"], r["protocol"]) for r in results] == [
        ("fluency", "linear"), ("fluency", "mlp"), ("style", "linear"), ("style", "mlp")]
    assert "speaker_level" in results[0]  # fluency is a speaker trait; style is not
    assert "speaker_level" not in results[2]
    assert (tmp_path / "c/confusion_style_linear.png").is_file()
    assert main(["evaluate", "classify", str(bundle), "--task", "mood", "--train",
                 str(root / "train.jsonl"), "--test", str(root / "test.jsonl"), "-q"]) == 2
    assert "no 'mood' label" in capsys.readouterr().err
