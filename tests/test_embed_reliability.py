"""`paravox embed` and the Embedder on bad input: bad rows skipped and listed (bad_items.tsv),
exit codes by --max-bad-fraction, short audio repeat-tiled up to each bundle's minimum, ids
that are unsafe as file names / Kaldi keys, NaN input, sample_rate= and 2-D arrays."""

import json

import numpy as np
import pytest
import soundfile as sf
import torch

from paravox.audio.io import resample
from paravox.cli.main import main
from paravox.errors import AudioError, ConfigError, ParavoxError
from paravox.inference import Embedder
from paravox.inference.bundle import random_bundle
from paravox.inference.embedder import (
    BadEmbedItem,
    InputShapeError,
    TooShortAudioError,
    describe_bad,
)
from paravox.inference.writers import (
    UnsafeIdError,
    read_embeddings,
    read_kaldi_ark,
    safe_name,
    write_embeddings,
)
from paravox.models import build_encoder

SMALL = {
    "xvector": {"channels": 16, "stats_channels": 32, "embedding_dim": 8},
    "ecapa": {"channels": 16, "mfa_channels": 48, "se_channels": 8, "attention_channels": 8,
              "scale": 4, "embedding_dim": 8},
}
GOOD = ["good1", "good2", "good3", "good4"]
SHORT = ["short_100ms", "ten_samples"]
BAD = {"missing": "missing", "empty": "empty", "nan": "nan"}


@pytest.fixture(scope="module", params=sorted(SMALL))
def bundle(request, tmp_path_factory):
    name = request.param
    return random_bundle(name, SMALL[name], {"n_mels": 24},
                         tmp_path_factory.mktemp(f"bundle_{name}"))


def noise(n, seed):
    return (np.random.default_rng(seed).standard_normal(n) * 0.1).astype(np.float32)


def write_manifest(path, rows):
    path.write_text("".join(json.dumps({"id": i, "path": str(p)}) + "\n" for i, p in rows))
    return path


@pytest.fixture
def messy(tmp_path, write_wav):
    """A manifest of 4 good rows, 2 short ones and 3 bad ones (missing, empty, NaN)."""
    rows = [(g, write_wav(f"{g}.wav", noise(16000, k))) for k, g in enumerate(GOOD)]
    rows.append(("short_100ms", write_wav("short.wav", noise(1600, 10))))
    rows.append(("ten_samples", write_wav("ten.wav", noise(10, 11))))
    rows.append(("missing", tmp_path / "nowhere.wav"))
    rows.append(("empty", write_wav("empty.wav", np.zeros(0, dtype=np.float32))))
    nan = noise(16000, 12)
    nan[100] = np.nan
    rows.append(("nan", write_wav("nan.wav", nan, subtype="FLOAT")))
    return write_manifest(tmp_path / "messy.jsonl", rows)


def test_min_frames_and_min_samples(bundle):
    emb = Embedder.from_bundle(bundle)
    if emb.encoder.cfg.__class__.__name__ == "TDNNConfig":
        assert emb.encoder.min_frames() == emb.encoder.context + 1 == 15
        assert emb.min_samples == 14 * 160  # 15 frames of n // 160 + 1
    else:
        assert emb.encoder.min_frames() == 1
        assert emb.min_samples == 512 // 2 + 1  # reflect padding of the 512-point FFT
    for n in (emb.min_samples, 1, 10, 1600):  # short audio is tiled, never a crash
        assert np.isfinite(emb.embed(noise(n, 0))).all()
    strict = Embedder.from_bundle(bundle, short="error")
    with pytest.raises(TooShortAudioError, match=f"minimum input of {emb.min_samples}") as ei:
        strict.embed(noise(10, 0))
    assert isinstance(ei.value, ParavoxError) and "10 samples" in str(ei.value)
    assert strict.embed(noise(emb.min_samples, 0)).shape == (8,)
    with pytest.raises(ConfigError, match="--chunk-seconds / chunk_seconds.*give at least"):
        emb.embed(noise(1600, 0), chunk_seconds=1 / 16000)


def test_padding_is_repeat_tiling(bundle):
    emb = Embedder.from_bundle(bundle)
    short = noise(100, 3)
    tiled = np.tile(short, -(-emb.min_samples // 100))[:emb.min_samples]
    np.testing.assert_allclose(emb.embed(short), emb.embed(tiled), rtol=1e-6, atol=1e-6)
    assert emb.frames(short).embedding.shape == (8,)


def test_min_frames_of_the_other_encoders():
    wrapped = build_encoder("projected", n_mels=24, base="xvector",
                            base_settings=SMALL["xvector"], dims=[8])
    assert wrapped.min_frames() == 15
    for name, settings in [("resnet34", {"base_channels": 4, "blocks": [1, 1, 1, 1]}),
                           ("transformer", {"subsample": 3})]:
        enc = build_encoder(name, n_mels=24, **settings).eval()
        assert enc.min_frames() == 1
        with torch.no_grad():
            assert torch.isfinite(enc(torch.randn(1, 1, 24)).embedding).all()


def test_hf_min_frames_is_the_cnn_receptive_field():
    pytest.importorskip("transformers")
    tiny = {"model_type": "wav2vec2", "hidden_size": 16, "num_hidden_layers": 1,
            "num_attention_heads": 2, "intermediate_size": 32, "conv_dim": [16, 16],
            "conv_kernel": [10, 3], "conv_stride": [5, 2], "num_conv_pos_embeddings": 16,
            "num_conv_pos_embedding_groups": 2, "feat_extract_norm": "layer"}
    enc = build_encoder("hf", hf_config=tiny, layers="last", embedding_dim=8).eval()
    assert enc.min_frames() == 1 + 9 + 2 * 5
    with torch.no_grad():
        enc(torch.randn(1, 20, 1))
        with pytest.raises(RuntimeError):
            enc(torch.randn(1, 19, 1))


def test_embed_command_skips_and_lists_bad_rows(bundle, messy, tmp_path, capsys):
    out = tmp_path / "out"
    # 3 bad rows of 9 is more than the default 10 %: exit 2, only bad_items.tsv written
    assert main(["embed", str(bundle), str(messy), "-o", str(out), "-q"]) == 2
    err = capsys.readouterr().err
    assert "3 of 9 utterances could not be embedded" in err and "bad_items.tsv" in err
    assert len(err.strip().splitlines()) == 1
    assert sorted(p.name for p in out.iterdir()) == ["bad_items.tsv"]
    # within the fraction: every good and padded-short row written, the bad ones listed
    assert main(["embed", str(bundle), str(messy), "-o", str(out), "-q",
                 "--max-bad-fraction", "0.4"]) == 0
    printed = capsys.readouterr().out.strip().splitlines()
    assert printed[0].startswith("wrote 6 embeddings")
    assert printed[1].startswith("skipped 3 of 9 utterances: missing (missing), empty (empty), "
                                 "nan (nan)")
    npz = np.load(out / "embeddings.npz")
    assert sorted(npz.files) == sorted(GOOD + SHORT)
    assert all(np.isfinite(npz[k]).all() for k in npz.files)
    lines = (out / "bad_items.tsv").read_text().splitlines()
    assert lines[0] == "id\tpath\treason"
    rows = {line.split("\t")[0]: line.split("\t") for line in lines[1:]}
    assert sorted(rows) == sorted(BAD)
    for uid, kind in BAD.items():
        assert rows[uid][2].startswith(f"{kind}: ") and rows[uid][1].endswith(".wav")
    # same embedding as the Embedder on the (tiled) file (to float rounding: the command
    # batches utterances by length, embed() of one file runs it alone)
    emb = Embedder.from_bundle(bundle)
    np.testing.assert_allclose(npz["ten_samples"], emb.embed(tmp_path / "ten.wav"), rtol=1e-5,
                               atol=1e-7)


def test_embed_command_all_good_and_all_bad(bundle, tmp_path, write_wav, capsys):
    good = write_manifest(tmp_path / "good.jsonl",
                          [(g, write_wav(f"{g}.wav", noise(8000, k))) for k, g in enumerate(GOOD)])
    out = tmp_path / "out"
    out.mkdir()
    (out / "bad_items.tsv").write_text("stale\n")
    assert main(["embed", str(bundle), str(good), "-o", str(out), "-q"]) == 0
    assert "skipped" not in capsys.readouterr().out
    assert not (out / "bad_items.tsv").exists()  # a stale list is removed
    bad = write_manifest(tmp_path / "bad.jsonl", [("gone", tmp_path / "gone.wav")])
    assert main(["embed", str(bundle), str(bad), "-o", str(tmp_path / "o2"), "-q",
                 "--max-bad-fraction", "1"]) == 2
    assert "none of the 1 utterances" in capsys.readouterr().err
    assert not (tmp_path / "o2/embeddings.npz").exists()
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["embed", str(bundle), str(empty), "-o", str(tmp_path / "o3"), "-q"]) == 2
    err = capsys.readouterr().err
    assert "no rows" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o3").exists()


def test_describe_bad_names_a_few_then_counts():
    bad = [BadEmbedItem(f"u{i}", f"/a/u{i}.wav", "missing: gone") for i in range(8)]
    assert describe_bad(bad, limit=3) == "u0 (missing), u1 (missing), u2 (missing) and 5 more"


UNSAFE = ["../../x", "a/b", "a b", ".", "..", "file", "allow_pickle", "ok-id_1.2"]


def files_under(root):
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_npy_and_npz_escape_unsafe_ids(tmp_path):
    vecs = {uid: np.full(3, i, dtype=np.float32) for i, uid in enumerate(UNSAFE)}
    root = tmp_path / "root"
    out = root / "deep" / "out"
    write_embeddings(vecs, out / "npy", "npy")
    write_embeddings(vecs, out / "npz", "npz")
    assert all(f.startswith("deep/out/") for f in files_under(root))  # nothing outside -o
    assert sorted(p.name for p in (out / "npy").iterdir()) == sorted(
        [safe_name(u) + ".npy" for u in UNSAFE] + ["index.tsv"])
    assert safe_name("../../x") == "..%2F..%2Fx" and safe_name("..") == "%2E%2E"
    assert safe_name("a b") == "a%20b" and safe_name("ok-id_1.2") == "ok-id_1.2"
    for fmt in ("npy", "npz/embeddings.npz"):
        back = read_embeddings(out / fmt)
        assert sorted(back) == sorted(UNSAFE)
        for uid in UNSAFE:
            np.testing.assert_array_equal(back[uid], vecs[uid])
    index = (out / "npy/index.tsv").read_text().splitlines()
    assert index[0] == "id\tfile" and "a/b\ta%2Fb.npy" in index
    assert "ok-id_1.2" in np.load(out / "npz/embeddings.npz").files  # safe ids: keys unchanged


def test_ark_refuses_whitespace_ids_before_writing(tmp_path):
    vecs = {uid: np.full(3, i, dtype=np.float32) for i, uid in enumerate(UNSAFE)}
    out = tmp_path / "ark"
    with pytest.raises(UnsafeIdError, match="'a b'") as ei:
        write_embeddings(vecs, out, "ark")
    assert "Kaldi" in str(ei.value) and isinstance(ei.value, ParavoxError)
    assert not out.exists() or files_under(out) == []
    ok = {k: v for k, v in vecs.items() if k != "a b"}
    path = write_embeddings(ok, out, "ark")
    assert files_under(out) == ["embeddings.ark", "embeddings.scp"]  # no temp files left
    back = read_kaldi_ark(path)
    assert sorted(back) == sorted(ok)  # '/' and '..' are fine inside a Kaldi key
    scp = (out / "embeddings.scp").read_text().splitlines()
    assert [line.split(" ")[0] for line in scp] == list(ok)


def test_embed_command_with_unsafe_ids(tmp_path, write_wav, capsys):
    bundle = random_bundle("ecapa", SMALL["ecapa"], {"n_mels": 24}, tmp_path / "b")
    rows = [(uid, write_wav(f"w{i}.wav", noise(4000, i)))
            for i, uid in enumerate(["../../x", "a/b", "a b"])]
    manifest = write_manifest(tmp_path / "m.jsonl", rows)
    work = tmp_path / "work"
    for fmt in ("npy", "npz"):
        assert main(["embed", str(bundle), str(manifest), "-o", str(work / fmt), "--format",
                     fmt, "-q"]) == 0
    assert all(f.startswith(("npy/", "npz/")) for f in files_under(work))
    assert sorted(read_embeddings(work / "npy")) == sorted(u for u, _ in rows)
    assert main(["embed", str(bundle), str(manifest), "-o", str(work / "ark"), "--format",
                 "ark", "-q"]) == 2
    assert "'a b'" in capsys.readouterr().err
    assert not (work / "ark").exists()  # refused before anything was computed or written


def test_nan_input_raises_naming_the_item(bundle, tmp_path, write_wav):
    emb = Embedder.from_bundle(bundle)
    wave = noise(16000, 0)
    wave[5] = np.inf
    with pytest.raises(AudioError, match="input 1: audio contains NaN or Inf"):
        emb.embed([noise(16000, 1), wave])
    with pytest.raises(AudioError, match="NaN or Inf"):
        emb.frames(wave)
    wave[5] = np.nan
    path = write_wav("nan.wav", wave, subtype="FLOAT")
    with pytest.raises(AudioError, match="nan.wav"):
        emb.embed(path)


def test_sample_rate_argument_resamples(bundle):
    emb = Embedder.from_bundle(bundle)
    wave8k = noise(8000, 4)
    up = resample(wave8k, 8000, 16000)
    np.testing.assert_allclose(emb.embed(wave8k, sample_rate=8000), emb.embed(up),
                               rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(emb.frames(wave8k, sample_rate=8000).embedding, emb.embed(up),
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(emb.embed(up, sample_rate=16000), emb.embed(up))


def test_two_dimensional_input_needs_channels_mean(bundle, tmp_path):
    emb = Embedder.from_bundle(bundle)
    stereo = np.stack([noise(8000, 5), noise(8000, 6)])  # [channels, samples]
    for x in (stereo, torch.from_numpy(stereo)):
        with pytest.raises(InputShapeError, match="channels='mean'"):
            emb.embed(x)
    with pytest.raises(InputShapeError):
        emb.frames(stereo)
    mono = stereo.mean(0)
    np.testing.assert_allclose(emb.embed(stereo, channels="mean"), emb.embed(mono), rtol=1e-6)
    np.testing.assert_allclose(emb.embed(stereo.T, channels="mean"), emb.embed(mono),
                               rtol=1e-6)
    # a list of 1-D arrays is still several utterances
    assert emb.embed([stereo[0], stereo[1]]).shape == (2, 8)
    # the same convention as load_audio on a stereo file
    path = tmp_path / "stereo.wav"
    sf.write(str(path), stereo.T, 16000, subtype="FLOAT")
    np.testing.assert_allclose(emb.embed(path), emb.embed(stereo, channels="mean"),
                               rtol=1e-5, atol=1e-6)
