"""`paravox study learn2diss --preset tiny`: stage 1 is trained once and shared by every
stage-2 row, every row is scored the same way, and the report has the table, the claims and
the figures (the tiny preset runs in CI)."""

from __future__ import annotations

import json
import re

import torch

from paravox.cli.main import main
from paravox.pipelines.learn2diss_study import MAIN, NO_MI, RANDOM, STAGE1, slug


def test_study_tiny_end_to_end(tiny_corpus, tmp_path, capsys):
    root, _ = tiny_corpus
    out = tmp_path / "l2d"
    assert main(["study", "learn2diss", "--preset", "tiny", "--corpus", str(root), "-o",
                 str(out), "--mgf-dir", str(tmp_path / "none"), "-q"]) == 0
    printed = capsys.readouterr().out
    res = json.loads((out / "results.json").read_text())
    assert res["rows"] == [MAIN, NO_MI, "joint, MI weight 2", STAGE1, RANDOM, "MGF", "DINO"]
    # stage 1 trained once: the other variants skip it as done
    assert printed.count("'independent': done earlier") == 2
    s1 = [torch.load(out / "runs" / slug(n) / "stages" / "1_independent" / "checkpoints" /
                     "last.ckpt", weights_only=True)["state_dict"]
          for n in (MAIN, NO_MI)]
    assert all(torch.equal(s1[0][k], s1[1][k]) for k in s1[0])
    for name, r in res["results"].items():
        assert 0 <= r["sv"]["eer"] <= 1, name
        assert 0 <= r["frame_speaker_id"]["accuracy"] <= 1, name
        assert r["frames_test"]["rows"], name
        if name not in ("MGF", "DINO"):
            assert r["utterance_frames_test"]["rows"] and "mi_test" in r["mi"], name
    # the logged MI and loss terms cover both stages of every stage-2 row
    for name in (MAIN, NO_MI):
        c = res["curves"][name]
        steps = [s for s, _ in c["series"]["train/mi"]]
        assert min(steps) < c["stage2_start"] < max(steps)
    md = (out / "report.md").read_text()
    for name in res["rows"]:
        assert f"| {name} |" in md, name
    assert "The penalty lowers the held-out MI" in md
    assert "Less speaker information in the frame encoder" in md
    figures = re.findall(r"\]\((figures/[^)]+\.png)\)", md)
    assert {"figures/stages.png", "figures/layers_frames_test.png"} <= set(figures)
    assert all((out / f).is_file() for f in figures)
    assert (out / "report.html").read_text().count("data:image/png;base64,") == len(figures)


def test_one_frozen_pass_gives_what_separate_passes_give(tiny_corpus, tmp_path):
    """The study reads each split once per encoder (:class:`FrozenFeatures`): its embeddings
    are embed_manifest's and its pooled frames the time-average of Embedder.frames' layer,
    for an encoder with a final batch norm (ECAPA) and one without (the x-vector)."""
    import numpy as np

    from paravox.data.manifest import Manifest
    from paravox.inference import Embedder
    from paravox.inference.bundle import random_bundle
    from paravox.inference.embedder import embed_manifest
    from paravox.pipelines.study_kit import FrozenFeatures

    root, _ = tiny_corpus
    manifest = Manifest.load(root / "test.jsonl")
    manifest.rows = manifest.rows[:6]
    for encoder, settings in (("ecapa", {"channels": 16, "mfa_channels": 48,
                                         "attention_channels": 8, "se_channels": 8}),
                              ("xvector", {"channels": 16, "stats_channels": 32,
                                           "embedding_dim": 8})):
        bundle = random_bundle(encoder, settings, {"n_mels": 24}, tmp_path / encoder, seed=0)
        emb = Embedder.from_bundle(bundle)
        feats = FrozenFeatures(emb, layer=1)
        expected = embed_manifest(emb, manifest, progress=False)
        got = feats.embeddings(manifest)
        assert list(got) == list(expected)
        for k in expected:
            np.testing.assert_allclose(got[k], expected[k], rtol=1e-6, atol=1e-7)
        name = emb.layer_names[1]
        for r in manifest:
            frames = emb.frames(str(manifest.audio_path(r)), layers=name).layers[name]
            np.testing.assert_allclose(feats.pooled(manifest)[r.id], frames.mean(0),
                                       rtol=1e-6, atol=1e-7)
        # the same file loaded again is read from the first pass, not embedded again
        whole = feats.embeddings(Manifest.load(root / "test.jsonl"))
        assert feats.embeddings(Manifest.load(root / "test.jsonl")) is whole
