"""The built-in corpus: determinism, label coverage, splits, trials, and that its tasks are real."""

import hashlib
import re

import numpy as np
import pytest
import soundfile as sf
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from paravox.audio.features import LogMelFilterbank
from paravox.data.manifest import Manifest
from paravox.data.synth import PRESETS, SynthConfig, generate_corpus
from paravox.data.synth.corpus import plan_speakers
from paravox.data.synth.voices import AGES, FLUENCY, GENDERS, STYLES
from paravox.data.validate import validate_manifest
from paravox.errors import ConfigError
from paravox.utils.config import build_config

SPLITS = ("pretrain", "train", "dev", "test")


def tree_digest(root):
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.name != "config.yaml")
    return {str(p.relative_to(root)): hashlib.md5(p.read_bytes()).hexdigest() for p in files}


def test_same_seed_gives_identical_files_for_any_worker_count(tiny_corpus, tmp_path):
    root, _ = tiny_corpus
    cfg = build_config(SynthConfig, base=PRESETS["tiny"], overrides=["workers=2"])
    generate_corpus(cfg, tmp_path / "again", progress=False)
    a, b = tree_digest(root), tree_digest(tmp_path / "again")
    assert len(a) > 190 and a == b


def test_a_different_seed_gives_different_audio(tmp_path):
    cfg = build_config(SynthConfig, base=PRESETS["tiny"],
                       overrides=["seed=1", "num_speakers=4", "utts_per_speaker=2",
                                  "split_fractions=[0.25,0.25,0.25,0.25]"])
    generate_corpus(cfg, tmp_path / "s1", progress=False)
    cfg.seed = 2
    generate_corpus(cfg, tmp_path / "s2", progress=False)
    a = sf.read(tmp_path / "s1/wav/spk0000/spk0000-u000.wav")[0]
    b = sf.read(tmp_path / "s2/wav/spk0000/spk0000-u000.wav")[0]
    assert a.shape != b.shape or not np.allclose(a, b)


def load_all(root):
    return {s: Manifest.load(root / f"{s}.jsonl") for s in SPLITS}


def test_every_split_validates_and_labels_cover_every_frame(tiny_corpus):
    root, summary = tiny_corpus
    for split in SPLITS:
        report = validate_manifest(root / f"{split}.jsonl")
        assert report.ok, report.summary()
    for m in load_all(root).values():
        for r in m:
            n = sf.info(str(m.audio_path(r))).frames
            assert r.alignment.num_frames == n // 160 + 1
            assert r.duration == pytest.approx(n / 16000, abs=1e-4)
    phones = (root / "phones.txt").read_text().split()
    assert phones[0] == "sil" and len(phones) == summary["phones"] == len(set(phones))
    used = {p for m in load_all(root).values() for r in m for p in r.alignment.phones}
    assert used == set(phones)


def test_silence_frames_are_silent(tiny_corpus):
    """On clean audio (test audio has a noisy channel), frames labelled sil whose neighbours are
    sil too hold no signal, and sil frames at phone boundaries are the only louder ones."""
    root, _ = tiny_corpus
    m = Manifest.load(root / "train.jsonl")
    interior_peak, n_sil, loud_boundary, n_phone, quiet_phone = -np.inf, 0, 0, 0, 0
    for r in m:
        wave = sf.read(str(m.audio_path(r)), dtype="float32")[0]
        labels = r.alignment.frame_labels()
        ref = np.sqrt(np.mean(wave**2))
        for k, lab in enumerate(labels):
            seg = wave[max(0, k * 160 - 80):k * 160 + 80]
            level = 20 * np.log10(np.sqrt(np.mean(seg**2)) / ref + 1e-12)
            if lab != "sil":
                n_phone += 1
                quiet_phone += level < -40
                continue
            n_sil += 1
            neighbours = labels[max(0, k - 1):k + 2]
            if all(x == "sil" for x in neighbours):
                interior_peak = max(interior_peak, level)
            elif level > -30:
                loud_boundary += 1
    assert n_sil > 1000 and n_phone > 1000
    # phone frames hold signal; the quiet ones are stop closures and gaps shorter than the
    # 50 ms that the generator relabels as sil
    assert quiet_phone / n_phone < 0.08
    assert interior_peak < -40, f"an interior silence frame is at {interior_peak:.1f} dB"
    assert loud_boundary / n_sil < 0.05


def test_splits_are_speaker_disjoint_and_pretrain_is_unlabelled(tiny_corpus):
    root, summary = tiny_corpus
    ms = load_all(root)
    assert all(r.speaker is None and not r.labels for r in ms["pretrain"])
    spk = {s: {r.speaker for r in ms[s]} for s in ("train", "dev", "test")}
    assert not (spk["train"] & spk["test"]) and not (spk["train"] & spk["dev"])
    pretrain_spk = {r.id.split("-")[0] for r in ms["pretrain"]}
    assert not pretrain_spk & (spk["train"] | spk["test"])
    for s in ("train", "test"):
        for r in ms[s]:
            assert r.labels["style"] in STYLES and r.labels["gender"] in GENDERS
            assert r.labels["age"] in AGES and r.labels["fluency"] in FLUENCY
            assert r.language in ("en", "es", "fi") and r.text
            assert ("channel" in r.labels) == (s == "test")
    assert summary["split_utterances"]["test"] == len(ms["test"]) > 0


def test_trials_are_voxceleb_format_over_test_speakers(tiny_corpus):
    root, summary = tiny_corpus
    test = Manifest.load(root / "test.jsonl")
    spk = {r.id: r.speaker for r in test}
    lines = (root / "trials.txt").read_text().splitlines()
    assert len(lines) == summary["trials"]
    pairs = set()
    for line in lines:
        assert re.fullmatch(r"[01] \S+ \S+", line)
        t, a, b = line.split()
        assert a in spk and b in spk and a != b
        assert (t == "1") == (spk[a] == spk[b])
        pairs.add(frozenset((a, b)))
    assert len(pairs) == len(lines)
    targets = sum(line[0] == "1" for line in lines)
    assert 0.2 < targets / len(lines) < 0.8


def utterance_features(m):
    fb = LogMelFilterbank()
    x, rows = [], list(m)
    for r in rows:
        wave = torch.from_numpy(sf.read(str(m.audio_path(r)), dtype="float32")[0])
        f = fb(wave)[0][0]
        raw = f + 0  # mean-normalised log-mel: spectral shape statistics
        x.append(torch.cat([raw.std(0), (raw[1:] - raw[:-1]).std(0)]).numpy())
    return np.stack(x), rows


def test_speakers_and_styles_are_learnable_tasks(tiny_corpus):
    """A linear model on utterance statistics tells speakers and styles apart well above
    chance: the voices differ in formants and voice quality, not only in prosody."""
    root, _ = tiny_corpus
    x, rows = utterance_features(Manifest.load(root / "train.jsonl"))
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=0.5))
    spk = [r.speaker for r in rows]
    acc_spk = cross_val_score(model, x, spk, cv=4).mean()
    assert acc_spk > 3 * (1 / len(set(spk))), acc_spk
    style = [r.labels["style"] for r in rows]
    acc_style = cross_val_score(model, x, style, cv=4).mean()
    assert acc_style > 1.5 * (1 / len(STYLES)), acc_style


@pytest.mark.parametrize("overrides, message", [
    (["languages=[en,xx]"], "no lexicon for \\['xx'\\]"),
    (["split_fractions=[0.5,0.5,0.5,0.5]"], "summing to 1"),
    (["num_speakers=2"], "num_speakers must be >= 4"),
    (["languages=[]"], "languages is empty"),
    (["phrases_per_utt=[3,1]"], "phrases_per_utt must be"),
    (["disfluent_fraction=1.5"], "disfluent_fraction must lie in"),
    (["split_fractions=[1.5,-0.5,0,0]"], "must not be negative"),
    (["voice_spread=0"], "voice_spread must lie in"),
])
def test_bad_synth_settings_are_named(tmp_path, overrides, message):
    cfg = build_config(SynthConfig, base=PRESETS["tiny"], overrides=overrides)
    with pytest.raises(ConfigError, match=message):
        generate_corpus(cfg, tmp_path / "x", progress=False)


def test_refuses_to_overwrite_a_non_empty_folder(tmp_path):
    (tmp_path / "keep.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not empty; pass --overwrite"):
        generate_corpus(SynthConfig(num_speakers=4), tmp_path, progress=False)
    with pytest.raises(ConfigError, match="does not look like a paravox corpus"):
        generate_corpus(SynthConfig(num_speakers=4), tmp_path, progress=False, overwrite=True)
    assert (tmp_path / "keep.txt").read_text() == "mine"


def test_reuse_keeps_a_complete_corpus_with_the_same_config(tiny_corpus):
    root, summary = tiny_corpus
    cfg = build_config(SynthConfig, base=PRESETS["tiny"], overrides=["workers=1"])
    again = generate_corpus(cfg, root, progress=False, reuse=True)
    assert again["reused"] and again["utterances"] == summary["utterances"]
    cfg.workers = 2  # the worker count does not change the files
    assert generate_corpus(cfg, root, progress=False, reuse=True)["reused"]
    cfg.seed = 5  # a different config is not reused, and the folder is not overwritten
    with pytest.raises(ConfigError, match="not empty"):
        generate_corpus(cfg, root, progress=False, reuse=True)


def test_voice_spread_widens_voices_about_the_same_centres():
    """``voice_spread`` scales every random voice range (spread 1.6: standard deviations about
    1.6x the demo's) without moving the gender centres, and stays within espeak-ng's ranges."""
    def draws(spread):
        cfg = SynthConfig(num_speakers=600, languages=["en"], voice_spread=spread)
        return plan_speakers(cfg)

    base, wide = draws(1.0), draws(1.6)
    for key in ("consonants", "voicing"):
        ratio = np.std([getattr(s, key) for s in wide]) / np.std([getattr(s, key) for s in base])
        assert 1.4 < ratio < 1.8, (key, ratio)
    for gender in GENDERS:  # within-gender spreads widen, the centres stay
        for key in ("pitch_base", "vtl"):
            b = [getattr(s, key) for s in base if s.gender == gender and s.age == "adult"]
            w = [getattr(s, key) for s in wide if s.gender == gender and s.age == "adult"]
            assert 1.3 < np.std(w) / np.std(b) < 1.9, (gender, key)
            assert abs(np.mean(w) - np.mean(b)) < 0.05 * np.mean(b), (gender, key)
    male = [s.vtl for s in wide if s.gender == "male"]
    female = [s.vtl for s in wide if s.gender == "female"]
    assert np.mean(male) + 8 < np.mean(female)  # the gender proxy stays audible
    extreme = plan_speakers(SynthConfig(num_speakers=400, languages=["en"], voice_spread=3.0))
    for s in extreme:
        assert s.pitch_base >= 40 and s.pitch_range > 0 and min(s.tone) >= 20
        assert all(f > 0 and h >= 40 and w >= 40 for f, h, w in s.formants)


def test_demo_voices_are_unchanged_at_spread_one():
    """Golden: ``voice_spread=1`` draws exactly the demo corpus's voices (recorded before the
    setting existed), so the demo corpus and its documented results stay reproducible."""
    import hashlib
    import json

    speakers = plan_speakers(SynthConfig(**PRESETS["demo"]))
    text = json.dumps([s.__dict__ for s in speakers], default=list)
    assert hashlib.sha256(text.encode()).hexdigest() == (
        "266515352feb4a1b2115d4ca047ee9be8eb459214b89592cc0023f9582b527dd")


def test_the_most_extreme_voices_still_synthesise(tmp_path, monkeypatch):
    """Voices at the floors and caps that widened ranges can reach are spoken by espeak-ng."""
    import dataclasses

    from paravox.data.synth import corpus

    cfg = SynthConfig(num_speakers=4, utts_per_speaker=2, languages=["en"],
                      split_fractions=(0.5, 0.25, 0.0, 0.25), voice_spread=3.0, workers=1)
    low = dict(vtl=60.0, pitch_base=40, pitch_range=4, flutter=0, roughness=0, voicing=40,
               breath=0, tone=(20, 20, 20), consonants=20, rate=112, formants=[(60, 40, 40)] * 9)
    high = dict(vtl=150.0, pitch_base=300, pitch_range=280, flutter=100, roughness=7,
                voicing=140, breath=60, tone=(270, 250, 240), consonants=180, rate=300,
                formants=[(150, 140, 190)] * 9)
    planned = corpus.plan_speakers(cfg)
    extreme = [dataclasses.replace(s, **(low if i % 2 else high)) for i, s in enumerate(planned)]
    monkeypatch.setattr(corpus, "plan_speakers", lambda _: extreme)
    summary = generate_corpus(cfg, tmp_path / "wide", progress=False)
    assert summary["utterances"] == 8
    for split in ("pretrain", "train", "test"):
        manifest = Manifest.load(tmp_path / "wide" / f"{split}.jsonl")
        for row in manifest:
            wave = sf.read(str(manifest.audio_path(row)))[0]
            assert np.isfinite(wave).all() and np.abs(wave).max() > 0.01, row.id
            assert row.duration > 0.5, row.id


def test_a_corpus_made_before_a_new_key_is_still_reused():
    """A stored config without a key added later (here ``voice_spread``) means that key's
    default; only a real difference, not the worker count, forces a new corpus."""
    from paravox.data.synth.corpus import _same_output
    from paravox.utils.config import config_yaml

    now = config_yaml(SynthConfig(**PRESETS["demo"]))
    old = "\n".join(line for line in now.splitlines() if not line.startswith("voice_spread"))
    assert "voice_spread" not in old and _same_output(now, old)
    assert _same_output(now, now.replace("workers: 2", "workers: 1"))
    assert not _same_output(config_yaml(SynthConfig(**PRESETS["large"])), old)
    assert not _same_output(now.replace("voice_spread: 1.0", "voice_spread: 1.6"), old)
