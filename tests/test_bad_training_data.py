"""Training never reports success on unreadable data: skipped items are named in
skipped_items.tsv and the summary, too many bad items stop the run with one line, a run that
read nothing fails (and leaves nothing to export), and unreadable babble sources are left out
of the noise bank instead of aborting the run."""

from __future__ import annotations

import warnings

from paravox.cli.main import main
from paravox.data.manifest import Manifest

TINY = ["simclr.encoder_settings.channels=16", "simclr.encoder_settings.mfa_channels=48",
        "simclr.encoder_settings.attention_channels=8", "simclr.encoder_settings.se_channels=8",
        "simclr.projector_hidden=32", "simclr.projector_dim=16", "simclr.crops.long_seconds=1.0",
        "simclr.augment.reverb_prob=0.0", "simclr.augment.n_babble=2", "run.epochs=1",
        "run.batch_size=8", "run.num_workers=0", "run.tensorboard=false", "-q"]


def _manifest(root, tmp_path, n, n_missing, name="m.jsonl"):
    m = Manifest.load(root / "pretrain.jsonl")
    m.rows = m.rows[:n]
    for row in m.rows[:n_missing]:
        row.path = str(tmp_path / "gone" / f"{row.id}.wav")
    m.save(tmp_path / name)
    return tmp_path / name, [r.id for r in m.rows[:n_missing]]


def _pretrain(manifest, out, *extra):
    return main(["pretrain", "simclr_demo", f"train_manifest={manifest}", "eval_manifest=null",
                 "trials=null", f"out_dir={out}", "run.babble_utterances=16", *extra, *TINY])


def test_some_bad_items_are_named_and_training_goes_on(tiny_corpus, tmp_path, capsys):
    warnings.filterwarnings("ignore")
    root, _ = tiny_corpus
    manifest, missing = _manifest(root, tmp_path, 32, 2)  # missing files among babble sources
    assert _pretrain(manifest, tmp_path / "run", "run.max_bad_fraction=0.2") == 0
    out = capsys.readouterr().out
    assert "skipped 2 unusable item(s)" in out and "skipped_items.tsv" in out
    listed = (tmp_path / "run" / "skipped_items.tsv").read_text().splitlines()
    assert listed[0] == "id\treason" and {line.split("\t")[0] for line in listed[1:]} == \
        set(missing)
    assert all("missing" in line for line in listed[1:])
    assert (tmp_path / "run" / "checkpoints" / "last.ckpt").is_file()


def test_too_many_bad_items_stop_the_run(tiny_corpus, tmp_path, capsys):
    warnings.filterwarnings("ignore")
    root, _ = tiny_corpus
    manifest, _ = _manifest(root, tmp_path, 40, 12)
    assert _pretrain(manifest, tmp_path / "run", "run.max_bad_fraction=0.1") == 2
    err = capsys.readouterr().err.strip()
    assert "run.max_bad_fraction=0.1" in err and "skipped_items.tsv" in err
    assert len(err.splitlines()) == 1


def test_nothing_readable_fails_and_leaves_nothing_to_export(tiny_corpus, tmp_path, capsys):
    warnings.filterwarnings("ignore")
    root, _ = tiny_corpus
    manifest, _ = _manifest(root, tmp_path, 16, 16)
    assert _pretrain(manifest, tmp_path / "run", "run.max_bad_fraction=1.0") == 2
    err = capsys.readouterr().err
    assert "no usable training item was read" in err
    assert not (tmp_path / "run" / "checkpoints" / "last.ckpt").exists()
    assert main(["export", str(tmp_path / "run"), "-o", str(tmp_path / "b")]) == 2
