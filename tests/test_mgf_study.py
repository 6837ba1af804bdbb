"""`paravox study mgf --preset tiny`: every row trains at one budget and is scored the same
way; the report has the table, the claims and the figures (the tiny preset runs in CI)."""

from __future__ import annotations

import json
import re

from paravox.cli.main import main
from paravox.pipelines.mgf_study import BASELINES, LOGMEL, RANDOM, VARIANTS


def test_study_tiny_end_to_end(tiny_corpus, tmp_path, capsys):
    root, summary = tiny_corpus
    out = tmp_path / "mgf"
    assert main(["study", "mgf", "--preset", "tiny", "--corpus", str(root), "-o", str(out),
                 "-q"]) == 0
    assert "== train MGF (all three scales)" in capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    assert res["rows"] == [*VARIANTS, *BASELINES, RANDOM, LOGMEL]
    for name, r in res["results"].items():
        assert 0 <= r["sv"]["eer"] <= 1 and r["sv"]["eer_ci"][0] <= r["sv"]["eer"]
        assert 0 <= r["speaker_id"]["accuracy"] <= 1 and r["speaker_id"]["n_speakers"] > 1
        assert {"style", "language"} <= set(r["classify_test"])
        rows = r["frames_test"]["rows"]
        assert rows and all(0 <= x["frame_accuracy"] <= 1 for x in rows), name
    # the MGF rows logged exactly their active loss terms
    md = (out / "report.md").read_text()
    for name in res["rows"]:
        assert f"| {name} |" in md, name
    assert "The combination beats every part on the phone probe" in md
    assert "Each scale needs its own loss" in md
    figures = re.findall(r"\]\((figures/[^)]+\.png)\)", md)
    assert {"figures/loss_terms.png", "figures/phone_layers_test.png"} <= set(figures)
    assert all((out / f).is_file() for f in figures)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(figures)
    # each variant's bundle exports and reloads as a frame + utterance model
    from paravox.inference import Embedder

    emb = Embedder.from_bundle(out / "bundles" / "frame_only")
    assert emb.layer_names[0] == "input" and emb.dim == 32
