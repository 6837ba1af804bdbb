"""Adding a study takes one pipeline module, one report module and one registration
(docs/adding-a-study.md): ``paravox study NAME`` then exists with its options, its preset
check, its corpus, its results.json and its report, and no other file is edited.

The study below is a throw-away written for this test the way a real one is written, from
the study kit's pieces: it compares a random-init ECAPA with a random-init x-vector on
speaker verification and one linear probe (the pipeline part), and renders one table (the
report part).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from paravox.cli.main import main
from paravox.data.manifest import Manifest
from paravox.inference import Embedder
from paravox.inference.bundle import random_bundle
from paravox.inference.embedder import embed_manifest
from paravox.pipelines.study_kit import (
    StageTimer,
    finish,
    prepare_corpus,
    probe_rows,
    quiet_study,
    sv_row,
)
from paravox.pipelines.study_registry import (
    StudyOption,
    StudySpec,
    check_preset,
    register_study,
    studies,
    unregister_study,
)
from paravox.report.document import Document
from paravox.report.tables import pct

# -- the pipeline module ----------------------------------------------------------------------
ENCODERS = {"ecapa": {"channels": 16, "mfa_channels": 48, "attention_channels": 8,
                      "se_channels": 8, "embedding_dim": 16},
            "xvector": {"channels": 16, "stats_channels": 32, "embedding_dim": 16}}
PRESETS = {"tiny": "tiny"}  # study preset -> corpus preset


def run_random_study(preset: str = "tiny", out_dir: str | Path = "runs/random",
                     corpus: str | Path | None = None, reuse: bool = False,
                     progress: bool = True, task: str = "style") -> dict:
    """Random-init encoders on SV and one probe."""
    check_preset(PRESETS, preset, "study")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    timer = StageTimer()
    with quiet_study():
        corpus = prepare_corpus(corpus, preset, PRESETS[preset], out, timer, progress)
        train_m = Manifest.load(corpus / "train.jsonl")
        test_m = Manifest.load(corpus / "test.jsonl")
        rows = {}
        for name, settings in ENCODERS.items():
            with timer(f"score {name}"):
                bundle = random_bundle(name, settings, {}, out / "bundles" / name, seed=0)
                embedder = Embedder.from_bundle(bundle)
                train = embed_manifest(embedder, train_m, progress=False)
                test = embed_manifest(embedder, test_m, progress=False)
                sv, _ = sv_row(test, corpus / "trials.txt", n_boot=50)
                rows[name] = {"sv": sv,
                              "probe": probe_rows(train_m, train, test_m, test, [task])[task]}
        return finish(out, {"preset": preset, "task": task, "rows": rows},
                      write_random_report, timer)


# -- the report module ------------------------------------------------------------------------
def write_random_report(out: Path, payload: dict) -> tuple[Path, Path]:
    """One table: EER and UAR per encoder."""
    doc = Document("Random-init encoders")
    doc.table(["encoder", "EER %", f"{payload['task']} UAR %"],
              [[n, pct(r["sv"]["eer"]), pct(r["probe"]["uar"])]
               for n, r in payload["rows"].items()])
    return doc.write(out)


# -- the registration -------------------------------------------------------------------------
SPEC = StudySpec("random", run_random_study, output="runs/random", presets=("tiny",),
                 help="random-init encoders on SV and a probe",
                 description="A throw-away study written by tests/test_study_registry.py.",
                 options=(StudyOption("--task", "task", "the probe's label", "style"),))


@pytest.fixture
def random_study():
    spec = register_study(SPEC)
    yield spec
    unregister_study("random")


def test_a_registered_study_runs_from_the_command_line(random_study, tiny_corpus, tmp_path,
                                                       capsys):
    root, _ = tiny_corpus
    out = tmp_path / "study"
    assert "random" in studies() and {"dino", "mgf", "learn2diss"} <= set(studies())
    code = main(["study", "random", "--corpus", str(root), "-o", str(out), "--task",
                 "language", "-q"])
    assert code == 0
    results = json.loads((out / "results.json").read_text())
    assert results["task"] == "language" and set(results["rows"]) == set(ENCODERS)
    for row in results["rows"].values():
        assert 0.0 <= row["sv"]["eer"] <= 1.0
        lo, hi = row["sv"]["eer_ci"]
        assert lo <= row["sv"]["eer"] <= hi
        assert row["sv"]["n_trials"] == len((root / "trials.txt").read_text().splitlines())
        assert 0.0 <= row["probe"]["uar"] <= 1.0
    assert {"score ecapa", "score xvector", "total"} <= set(results["timing_seconds"])
    report = (out / "report.md").read_text()
    assert "| ecapa |" in report and (out / "report.html").is_file()
    assert "report:" in capsys.readouterr().out
    # the preset choices come from the registration
    with pytest.raises(SystemExit):
        main(["study", "random", "--preset", "demo", "-o", str(out)])


def test_an_unregistered_study_is_gone_and_names_are_unique(random_study):
    with pytest.raises(Exception, match="already registered"):
        register_study(StudySpec("random", run_random_study, "other help", "", "x"))
    unregister_study("random")
    assert "random" not in studies()
    with pytest.raises(SystemExit):
        main(["study", "random", "-o", "x"])
