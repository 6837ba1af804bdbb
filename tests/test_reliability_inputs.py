"""Reliability round 3, input side: non-finite or out-of-range manifest numbers are a named
bad row (file:line and field) in every command and importer, a FIFO in a manifest is refused
instead of hanging, bundle configs and weights are checked before anything is allocated, the
Embedder and OnnxEmbedder refuse what is not audio in one line, and recipe YAML that is not
plain settings is one line that never echoes the file."""

from __future__ import annotations

import json
import os
import shutil
import signal
import warnings

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

import paravox.models.bundle_format as bundle_format
from paravox.audio.io import load_audio
from paravox.cli.main import main
from paravox.data.importers import import_csv, import_kaldi, import_nemo, import_speechbrain
from paravox.data.manifest import Manifest
from paravox.data.validate import validate_manifest
from paravox.errors import AudioError, ConfigError, ManifestError
from paravox.inference import Embedder
from paravox.inference.audio_inputs import InputShapeError, InputTypeError
from paravox.inference.bundle import random_bundle
from paravox.inference.onnx_export import OnnxEmbedder

SMALL_ECAPA = {"channels": 16, "mfa_channels": 48, "se_channels": 8, "attention_channels": 8,
               "scale": 4, "embedding_dim": 8}
SR = 16000


@pytest.fixture(scope="module")
def bundle(tmp_path_factory):
    return random_bundle("ecapa", SMALL_ECAPA, {"n_mels": 24},
                         tmp_path_factory.mktemp("bundle"))


@pytest.fixture
def good_wav(write_wav):
    rng = np.random.default_rng(0)
    return write_wav("good.wav", (rng.standard_normal(SR) * 0.1).astype(np.float32))


def one_line_error(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# -- manifest numbers ------------------------------------------------------------------------
BAD_NUMBERS = [('"offset": NaN', "'offset' must be a finite number"),
               ('"duration": Infinity', "'duration' must be a finite number"),
               ('"duration": 1e308', "duration=1e+308: need duration > 0"),
               ('"offset": -Infinity', "'offset' must be a finite number"),
               ('"offset": 1e308', "offset=1e+308: need 0 <= offset"),
               ('"sample_rate": -5', "'sample_rate' must be a rate in Hz"),
               ('"sample_rate": 1e400', "'sample_rate' must be a finite number"),
               ('"duration": true', "'duration' must be a number")]


def bad_manifest(tmp_path, good_wav, field: str):
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"id": "ok", "path": str(good_wav)}) + "\n" +
                    f'{{"id": "bad", "path": "{good_wav}", {field}}}\n')
    return path


@pytest.mark.parametrize("field, message", BAD_NUMBERS)
def test_bad_numbers_are_a_named_bad_row(tmp_path, good_wav, field, message):
    path = bad_manifest(tmp_path, good_wav, field)
    with pytest.raises(ManifestError, match=message.replace("+", r"\+")) as err:
        Manifest.load(path)
    assert f"{path}:2" in str(err.value)
    report = validate_manifest(path)
    assert [(p.kind, p.line) for p in report.problems] == [("bad_row", 2)]
    assert message in report.problems[0].detail


@pytest.mark.parametrize("field", ['"offset": NaN', '"duration": Infinity',
                                   '"duration": 1e308'])
def test_bad_numbers_in_every_command(tmp_path, good_wav, bundle, capsys, field):
    path = bad_manifest(tmp_path, good_wav, field)
    assert main(["manifest", "validate", str(path), "-q"]) == 1
    captured = capsys.readouterr()
    assert "bad_row" in captured.out and "Traceback" not in captured.out + captured.err
    for command in (["embed", str(bundle), str(path), "-o", str(tmp_path / "emb"), "-q"],
                    ["pretrain", "dino_demo", f"train_manifest={path}", "eval_manifest=null",
                     "trials=null", f"out_dir={tmp_path}/run"],
                    ["manifest", "stats", str(path)]):
        assert main(command) == 2, command
        err = one_line_error(capsys)
        assert f"{path}:2" in err, err


def test_importers_refuse_nonfinite_numbers(tmp_path, good_wav, monkeypatch):
    kaldi = tmp_path / "kaldi"
    kaldi.mkdir()
    (kaldi / "wav.scp").write_text(f"rec1 {good_wav}\n")
    (kaldi / "segments").write_text("u1 rec1 0.0 0.5\nu2 rec1 nan 0.5\n")
    with pytest.raises(ManifestError, match=r"segments:2: start 'nan' / end '0.5' must be "
                                            r"finite seconds"):
        import_kaldi(kaldi)
    (kaldi / "segments").write_text("u1 rec1 0.0 inf\n")
    with pytest.raises(ManifestError, match=r"segments:1: .*finite seconds"):
        import_kaldi(kaldi)

    (tmp_path / "t.csv").write_text(f"id,path,duration\na,{good_wav},0.5\nb,{good_wav},inf\n")
    with pytest.raises(ManifestError, match=r"t.csv:3: 'duration' must be a finite number"):
        import_csv(tmp_path / "t.csv")

    (tmp_path / "nemo.json").write_text(
        json.dumps({"audio_filepath": str(good_wav), "duration": 0.5}) + "\n" +
        f'{{"audio_filepath": "{good_wav}", "duration": NaN}}\n')
    with pytest.raises(ManifestError, match=r"nemo.json:2: 'duration' must be a finite"):
        import_nemo(tmp_path / "nemo.json")
    (tmp_path / "nemo2.json").write_text(
        f'{{"audio_filepath": "{good_wav}", "duration": 0.5, "offset": 1e308}}\n')
    with pytest.raises(ManifestError, match=r"nemo2.json:1: offset=1e\+308"):
        import_nemo(tmp_path / "nemo2.json")

    (tmp_path / "sb.csv").write_text(f"ID,duration,wav,spk_id\na,nan,{good_wav},s1\n")
    with pytest.raises(ManifestError, match=r"sb.csv:2: 'duration' must be a finite"):
        import_speechbrain(tmp_path / "sb.csv")
    (tmp_path / "sb2.csv").write_text(f"ID,duration,wav,spk_id,start,stop\n"
                                      f"a,1.0,{good_wav},s1,0,inf\n")
    with pytest.raises(ManifestError, match=r"sb2.csv:2: start/stop must be sample indices"):
        import_speechbrain(tmp_path / "sb2.csv")


def test_a_fifo_is_refused_not_read(tmp_path, good_wav, capsys):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    path = tmp_path / "m.jsonl"
    path.write_text(json.dumps({"id": "ok", "path": str(good_wav)}) + "\n" +
                    json.dumps({"id": "fifo", "path": str(fifo)}) + "\n")

    def hung(signum, frame):
        raise AssertionError("reading a FIFO hung")

    previous = signal.signal(signal.SIGALRM, hung)
    signal.alarm(30)
    try:
        with pytest.raises(AudioError, match="not a regular file"):
            load_audio(fifo)
        report = validate_manifest(path)
        assert main(["manifest", "validate", str(path), "-q"]) == 1
        assert main(["manifest", "stats", str(fifo)]) == 2
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)
    assert [(p.line, p.kind) for p in report.problems] == [(2, "corrupt")]
    assert "not a regular file" in report.problems[0].detail
    assert "not a regular file" in capsys.readouterr().err


# -- bundles -----------------------------------------------------------------------------------
def edited(bundle, tmp_path, config=None, weights=None):
    out = tmp_path / "edited"
    shutil.copytree(bundle, out)
    if config is not None:
        cfg = json.loads((out / "config.json").read_text())
        config(cfg)
        (out / "config.json").write_text(json.dumps(cfg))
    if weights is not None:
        state = load_file(out / "model.safetensors")
        weights(state)
        save_file(state, out / "model.safetensors")
    return out


def as_int64(state):
    state.update({k: v.to(torch.int64) for k, v in state.items() if v.is_floating_point()})


@pytest.mark.parametrize("config, weights, message", [
    (lambda c: c.update(version="9"), None, "version '9' is not a bundle version"),
    (lambda c: c.update(version=True), None, "version True is not a bundle version"),
    (lambda c: c["features"].update(sample_rate=-16000), None,
     "features.sample_rate=-16000: must be in [1, 384000]"),
    (lambda c: c["features"].update(sample_rate="16k"), None, "must be an integer"),
    (lambda c: c["features"].update(n_fft=2 ** 31), None, "features.n_fft=2147483648"),
    (lambda c: c["encoder_settings"].update(channels=10_000_000), None,
     "encoder_settings.channels=10000000 is out of range"),
    (lambda c: c["encoder_settings"].update(channels=32), None,
     "'stem.0.weight' is [16, 24, 5], the encoder's is [32, 24, 5]"),
    (lambda c: c.update(encoder_settings=[16]), None, "'encoder_settings' must be an object"),
    (None, as_int64, "is I64, not floating point"),
    (None, lambda s: s["embed.weight"].fill_(float("nan")),
     "'embed.weight' (768 of 768 values are NaN/Inf)"),
    (None, lambda s: s.pop("embed.bias"), "'embed.bias' is missing"),
])
def test_bad_bundles_are_one_line(bundle, tmp_path, good_wav, capsys, config, weights,
                                  message):
    bad = edited(bundle, tmp_path, config, weights)
    with pytest.raises(ConfigError) as err:
        Embedder.from_bundle(bad)
    assert message in str(err.value) and "\n" not in str(err.value), str(err.value)
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "a", "path": str(good_wav)}) + "\n")
    assert main(["embed", str(bad), str(manifest), "-o", str(tmp_path / "out"), "-q"]) == 2
    assert message in one_line_error(capsys)


def test_bundle_weights_are_checked_before_anything_is_allocated(bundle, tmp_path,
                                                                 monkeypatch):
    """A config asking for a big model with weights that do not fit: refused from the
    safetensors header and an encoder built on the meta device; no real encoder is built and
    no weight is read."""
    built_on = []
    real_build = bundle_format.build_encoder

    def spy(*args, **kwargs):
        built_on.append(torch.empty(0).device.type)
        return real_build(*args, **kwargs)

    def no_loading(*args, **kwargs):
        raise AssertionError("the weights were read before the header was checked")

    monkeypatch.setattr(bundle_format, "build_encoder", spy)
    monkeypatch.setattr(bundle_format, "load_file", no_loading)
    big = edited(bundle, tmp_path, lambda c: c["encoder_settings"].update(
        channels=60000, mfa_channels=90000))  # a real ECAPA this size: ~100 GB
    with pytest.raises(ConfigError, match="the weights do not fit"):
        Embedder.from_bundle(big)
    assert built_on == ["meta"]


# -- Embedder inputs ---------------------------------------------------------------------------
def test_embedder_refuses_what_is_not_audio(bundle):
    emb = Embedder.from_bundle(bundle)
    wave = (np.random.default_rng(1).standard_normal(SR) * 0.1).astype(np.float32)
    assert emb.embed([]).shape == (0, emb.dim)
    for rate in (0, -5, float("nan"), 16000.5, "16000", True):
        with pytest.raises(ConfigError, match="sample_rate="):
            emb.embed(wave, sample_rate=rate)
    with pytest.raises(ConfigError, match="sample_rate="):
        emb.embed([], sample_rate=0)
    with pytest.raises(InputShapeError, match="a single number is not a waveform"):
        emb.embed(np.float32(0.5))
    with pytest.raises(InputShapeError, match="input 0: a single number"):
        emb.embed([0.1, 0.2])
    with pytest.raises(InputTypeError, match="input: a float is not audio"):
        emb.embed(0.5)
    for bad, kind in ((np.array(["a", "b"]), "text"), (np.zeros(SR, np.uint8), "unsigned"),
                      (np.zeros(SR, bool), "bool"), (np.zeros(SR, np.complex64), "complex"),
                      (np.zeros(SR, np.int64), "integer")):
        with pytest.raises(InputTypeError, match=f"is not audio.*{kind}|{kind}.*not audio"):
            emb.embed(bad, sample_rate=SR)
    # int16 PCM is read as soundfile reads it: scaled by its full range
    pcm = np.round(wave * 32767).astype(np.int16)
    np.testing.assert_allclose(emb.embed(pcm, sample_rate=SR),
                               emb.embed(pcm.astype(np.float32) / 32768, sample_rate=SR),
                               rtol=1e-5, atol=1e-6)


def test_embedder_device_must_exist():
    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    encoder, fbank = torch.nn.Identity(), torch.nn.Identity()
    with pytest.raises(ConfigError, match="device=cuda: no CUDA GPU is visible"):
        Embedder(encoder, fbank, device="cuda")


def test_an_array_without_sample_rate_is_assumed_at_the_bundle_rate_once(bundle, good_wav):
    emb = Embedder.from_bundle(bundle)
    wave48k = (np.random.default_rng(2).standard_normal(48000) * 0.1).astype(np.float32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        emb.embed(good_wav)  # a file knows its rate
        emb.embed(wave48k, sample_rate=48000)
        assert not caught
        emb.embed(wave48k)
        emb.frames(wave48k)
        emb.embed([wave48k, wave48k])
    said = [str(w.message) for w in caught]
    assert len(said) == 1 and "16000 Hz" in said[0] and "sample_rate=" in said[0], said
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        Embedder.from_bundle(bundle).embed(wave48k)  # a new Embedder warns again
    assert len(caught) == 1


def test_onnx_embedder_refuses_a_garbage_file(tmp_path):
    pytest.importorskip("onnxruntime")
    (tmp_path / "model.onnx").write_bytes(b"this is not a protobuf" * 10)
    with pytest.raises(ConfigError, match="model.onnx: not a readable ONNX model") as err:
        OnnxEmbedder(tmp_path)
    assert "\n" not in str(err.value)


# -- recipe YAML -------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("method: dino\nrun: !!python/object:os.system {}\n", ":2:6: not valid YAML settings"),
    ("method: dino\nrun: [1, 2\n", ":3:1: not valid YAML settings"),
    ("- method\n- dino\n", "the top level is a list"),
    ("method: dino\nmethod: simclr\n", "found duplicate key method"),
    ("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n",
     "not a settings file"),
    ("\x00\x01binary", "not a YAML text file"),
])
def test_bad_recipe_files_are_one_line_and_not_echoed(tmp_path, capsys, text, message):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(text)
    assert main(["pretrain", str(recipe)]) == 2
    err = one_line_error(capsys)
    assert message in err and str(recipe) in err, err
    assert "root:x" not in err and "nologin" not in err and "binary" not in err


def test_a_misspelt_key_lists_its_own_section(capsys):
    assert main(["pretrain", "dino_demo", "dino.foo=1", "--print-config"]) == 2
    err = one_line_error(capsys)
    assert "key 'dino.foo'" in err and "Valid keys of dino (DINOConfig)" in err
    assert "student_temp" in err and "train_manifest" not in err
    assert main(["pretrain", "dino_demo", "dino.optim.lrr=1", "--print-config"]) == 2
    err = one_line_error(capsys)
    assert "Valid keys of dino.optim (OptimConfig)" in err and "min_lr" in err
    assert main(["pretrain", "dino_demo", "nope=1", "--print-config"]) == 2
    assert "Valid top-level keys" in one_line_error(capsys)
