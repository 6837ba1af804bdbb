"""The one-command demo, end to end on the tiny corpus (`paravox demo --preset tiny`), and the
report writer."""

import json
import re

import pytest

from paravox.data.manifest import Manifest
from paravox.report.document import Document


def test_demo_tiny_end_to_end(tiny_corpus, tmp_path, capsys):
    from paravox.cli.main import main

    root, summary = tiny_corpus
    out = tmp_path / "demo"
    assert main(["demo", "--preset", "tiny", "-o", str(out), "--corpus", str(root), "-q"]) == 0
    printed = capsys.readouterr().out
    assert "== train DINO" in printed and "report:" in printed  # visible progress
    res = json.loads((out / "results.json").read_text())
    assert list(res["models"]) == ["dino", "simclr", "xvector", "random"]
    n_test = len(Manifest.load(root / "test.jsonl"))
    n_train = len(Manifest.load(root / "train.jsonl"))
    for key, r in res["results"].items():
        sv = r["sv"]
        assert 0 <= sv["eer_ci"][0] <= sv["eer"] <= sv["eer_ci"][1] <= 1, key
        assert sv["n_trials"] == summary["trials"]
        for task in ("style", "fluency", "language"):
            for protocol in ("linear", "staged"):
                row = r["classify"][task][protocol]
                assert 0 <= row["uar"] <= 1 and row["n_test"] == n_test
                assert row["n_train"] == n_train
                assert sum(map(sum, row["confusion"])) == n_test
        assert (out / "bundles" / key / "model.safetensors").is_file()
        frames = r["frames"]  # the phone probe on every layer of every model
        layers = {row["layer"] for row in frames["rows"]}
        assert frames["summary"]["best"]["layer"] in layers and "log-mel" not in layers
        assert all(0 <= row["frame_accuracy"] <= 1 for row in frames["rows"])
    assert set(res["phone_probe_log_mel"]) == {"frames"}  # the tiny corpus has no dev split
    floor = res["phone_probe_log_mel"]["frames"]["summary"]
    assert floor["log_mel"]["frame_accuracy"] > floor["chance"]
    assert {"train DINO", "report"} <= {k.split(" (")[0] for k in res["timing_seconds"]}

    md = (out / "report.md").read_text()
    assert "synthetic" in md and "proxies" in md and "emotion" in md
    table = [line for line in md.splitlines() if line.startswith("| ")]
    for name in ("DINO", "SimCLR", "x-vector (supervised)", "random init"):
        assert any(line.startswith(f"| {name}") for line in table), name
    figures = re.findall(r"\]\((figures/[^)]+\.png)\)", md)
    assert {"figures/det.png", "figures/training.png", "figures/projections.png",
            "figures/confusion_style.png", "figures/phone_probe_layers.png"} <= set(figures)
    assert "| log-mel (floor)" in md
    assert all((out / f).is_file() for f in figures)
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == len(figures)
    assert 'src="figures/' not in html  # self-contained
    assert "<table>" in html and "dino:" in html  # results table and the run configs


def test_document_writes_markdown_and_inline_html(tmp_path):
    from matplotlib.figure import Figure

    from paravox.report.plots import _save

    fig = Figure()
    ax = fig.subplots()
    ax.plot([0, 1])
    _save(fig, tmp_path / "figures" / "a.png")
    doc = Document("T")
    doc.note("**careful** <b>")
    doc.table(["name", "x"], [["a|b", 1.5]])
    doc.image("figures/a.png", "a plot")
    doc.details("config <x>", "key: <value>")
    md, html = doc.write(tmp_path)
    text = md.read_text()
    assert "![a plot](figures/a.png)" in text and "a\\|b" in text
    page = html.read_text()
    assert "data:image/png;base64," in page and "<td>a|b</td>" in page
    assert "&lt;value&gt;" in page and "<strong>careful</strong>" in page
    doc.image("figures/missing.png", "gone")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        doc.write(tmp_path)
