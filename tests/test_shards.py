"""Tar shards: ``paravox shard`` writes the manifest's audio bytes and rows unchanged with an
exact index; the stream reads every item once per epoch, split over ranks and loader workers
in whole batches, with the file-based dataset's crops, and resumes mid-epoch exactly."""

from __future__ import annotations

import json
import tarfile

import numpy as np
import pytest

from conftest import tone
from paravox.audio.io import AudioMember, load_audio
from paravox.cli.main import main
from paravox.data.crops import CropConfig
from paravox.data.dataset import MultiCropDataset, collate_crops
from paravox.data.manifest import Manifest
from paravox.data.shard_stream import (
    ShardLoader,
    ShardStream,
    delivered,
    shuffle_buffer,
    worker_batches,
)
from paravox.data.shards import ShardIndex, write_shards
from paravox.errors import AudioError, ConfigError

CROPS = CropConfig(n_long=1, long_seconds=0.5, n_short=0)
N = 23  # rows sharded: a prime, so no split divides it evenly


@pytest.fixture(scope="module")
def corpus(tiny_corpus, tmp_path_factory):
    """The first N rows of the tiny corpus (one row's file broken) and their shards."""
    root, _ = tiny_corpus
    tmp = tmp_path_factory.mktemp("shards")
    m = Manifest.load(root / "pretrain.jsonl")
    m.rows = m.rows[:N]
    m.save(tmp / "m.jsonl")
    summary = write_shards(tmp / "m.jsonl", tmp / "shards", shard_items=4, seed=1,
                           progress=False)
    return Manifest.load(tmp / "m.jsonl"), tmp / "shards", summary


def stream(shards, buffer=5, replicas=1, rank=0, batch=1):
    index = ShardIndex.load(shards)
    s = ShardStream(index, MultiCropDataset(index.manifest(), CROPS, seed=4), seed=2,
                    buffer=buffer, num_replicas=replicas, rank=rank)
    s.batch_size = batch
    return s


def test_shards_hold_the_rows_and_audio_bytes_unchanged(corpus):
    m, shards, summary = corpus
    index = ShardIndex.load(shards / "index.json")
    assert summary["items"] == index.items == N and summary["skipped"] == 0
    assert [s.items for s in index.shards] == [4, 4, 4, 4, 4, 3]
    assert index.seconds == pytest.approx(sum(r.duration for r in m.rows), abs=0.01)
    seen = {}
    for info in index.shards:
        with tarfile.open(shards / info.file) as tar:
            members = tar.getmembers()
            for meta, audio in zip(members[::2], members[1::2]):
                key = meta.name.split(".")[0]
                assert audio.name.split(".")[0] == key and audio.name.endswith(".wav")
                row = json.loads(tar.extractfile(meta).read())
                assert row == json.loads(m.rows[int(key)].to_json())  # the manifest row
                data = tar.extractfile(audio).read()
                assert data == m.audio_path(m.rows[int(key)]).read_bytes()
                seen[row["id"]] = audio.offset_data
    assert sorted(seen) == sorted(r.id for r in m.rows)
    sharded = index.manifest()
    for row in sharded.rows:  # the shard manifest locates every member for random access
        assert row.extra["shard_offset"] == seen[row.id]
        original = m[row.id]
        np.testing.assert_array_equal(load_audio(sharded.audio_path(row)),
                                      load_audio(m.audio_path(original)))
        assert row.speaker == original.speaker and row.labels == original.labels


def test_every_item_once_per_epoch_with_the_file_datasets_crops(corpus):
    m, shards, _ = corpus
    s = stream(shards)
    files = MultiCropDataset(m, CROPS, seed=4)
    for epoch in (0, 1):
        items = list(s.stream(epoch, 0, 1))
        assert sorted(it["id"] for it in items) == sorted(r.id for r in m.rows)
        for it in items[:5]:  # same keyed draws as the file-based dataset's key
            ref = files[epoch * len(m) + int(m.rows.index(m[it["id"]]))]
            np.testing.assert_array_equal(it["groups"][0], ref["groups"][0])
            assert it["row"].speaker == ref["row"].speaker
    first = [it["id"] for it in s.stream(0, 0, 1)]
    assert first == [it["id"] for it in s.stream(0, 0, 1)]  # an epoch is reproducible
    assert first != [it["id"] for it in s.stream(1, 0, 1)]  # and the next one differs


@pytest.mark.parametrize("replicas,workers,batch", [(1, 1, 1), (2, 3, 2), (3, 2, 3),
                                                    (4, 4, 1), (2, 1, 5)])
def test_ranks_and_workers_split_an_epoch_in_whole_batches(corpus, replicas, workers, batch):
    """Each rank gets (N // W) // B batches (the file-based count); no item twice."""
    _, shards, _ = corpus
    ids = []
    for rank in range(replicas):
        s = stream(shards, replicas=replicas, rank=rank, batch=batch)
        per_worker = [[it["id"] for it in s.stream(3, k, workers)] for k in range(workers)]
        assert all(len(w) % batch == 0 for w in per_worker)
        assert sum(len(w) for w in per_worker) == (N // replicas) // batch * batch
        assert len(s) == N // replicas
        ids += [i for w in per_worker for i in w]
    assert len(ids) == len(set(ids))


def test_worker_split_and_resume_arithmetic():
    assert [worker_batches(7, 3, k) for k in range(3)] == [(0, 3), (3, 2), (5, 2)]
    # the loader takes batches in turn: after 5 batches workers 0, 1 gave 2 and worker 2 one
    assert [delivered(5, 3, k) for k in range(3)] == [2, 2, 1]
    out = list(shuffle_buffer(iter(range(50)), 8, np.random.default_rng(0)))
    assert sorted(out) == list(range(50)) and out != list(range(50))


@pytest.mark.filterwarnings("ignore:This DataLoader will create")  # 3 workers on 2 cores
@pytest.mark.parametrize("workers", [0, 2, 3])
def test_loader_resumes_mid_epoch_exactly(corpus, workers):
    """Resumed after d batches, the pass yields the uninterrupted pass's batches from d on,
    in order, with 1 to 3 loader workers (whose parts then differ in length)."""
    _, shards, _ = corpus

    def loader():
        return ShardLoader(stream(shards, batch=2), batch_size=2, num_workers=workers,
                           collate_fn=collate_crops)

    full = loader()
    full.set_epoch(1)
    batches = [b.ids for b in full]
    assert len(batches) == len(full) == N // 2
    for done in (1, 5, len(batches) - 1):
        resumed = loader()
        resumed.load_state_dict({"epoch": 1, "batches_done": done, "world": 1,
                                 "workers": max(workers, 1)})
        assert [b.ids for b in resumed] == batches[done:]
    again = [b.ids for b in resumed]  # the pass after the resumed one: a whole epoch
    assert len(again) == len(batches)
    at_end = loader()
    at_end.load_state_dict({"epoch": 1, "batches_done": len(at_end)})
    assert at_end.epoch == 2


def test_bad_items_and_bad_folders_are_named(corpus, tmp_path, capsys):
    m, shards, _ = corpus
    m.rows = m.rows[:6]
    (tmp_path / "bad.wav").write_bytes(b"RIFF not really")
    m.rows[2].path = str(tmp_path / "bad.wav")
    m.rows[4].path = str(tmp_path / "gone.wav")
    m.save(tmp_path / "m.jsonl")
    assert main(["shard", str(tmp_path / "m.jsonl"), "-o", str(tmp_path / "s"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "wrote 1 shard" in out and "4 utterances" in out and "left out 2" in out
    listed = (tmp_path / "s" / "skipped.tsv").read_text()
    assert m.rows[2].id in listed and "gone.wav" in listed and "missing" in listed
    assert main(["shard", str(tmp_path / "m.jsonl"), "-o", str(tmp_path / "s"), "-q"]) == 2
    assert "--overwrite" in capsys.readouterr().err
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not shards"):
        write_shards(tmp_path / "m.jsonl", tmp_path / "other", progress=False)
    with pytest.raises(ConfigError, match="not found"):
        ShardIndex.load(tmp_path / "nowhere")
    shard = tmp_path / "s" / "shard-000000.tar"
    shard.write_bytes(shard.read_bytes()[:2000])  # cut short by a failed copy
    with pytest.raises(ConfigError, match="shard-000000.tar is missing or shorter"):
        ShardIndex.load(tmp_path / "s")
    index = ShardIndex.load(shards)
    row = index.manifest().rows[0]
    member = index.manifest().audio_path(row)
    broken = type(member)(member.container, member.name, member.offset, 10**9)
    with pytest.raises(AudioError, match="shard-.*tar:.*wav"):
        load_audio(broken)


def test_a_member_fails_as_its_file_would(write_wav, tmp_path):
    """A truncated WAV inside a shard is refused with the shard and member named, as the same
    file would be (the header promises more frames than the bytes hold)."""
    data = write_wav("a.wav", tone(seconds=1.0)).read_bytes()
    cut = AudioMember(tmp_path / "shard-000000.tar", "000000007.wav", data=data[:len(data) // 2])
    with pytest.raises(AudioError, match=r"shard-000000.tar:000000007.wav: truncated") as exc:
        load_audio(cut)
    assert exc.value.kind == "truncated"
    whole = AudioMember(tmp_path / "shard-000000.tar", "000000007.wav", data=data)
    np.testing.assert_array_equal(load_audio(whole, 0.25, 0.5),
                                  load_audio(tmp_path / "a.wav", 0.25, 0.5))


def test_a_resumed_pass_does_not_read_the_items_it_skips(corpus):
    _, shards, _ = corpus
    s = stream(shards)
    full = [it["id"] for it in s.stream(1, 0, 1)]
    read = []
    records = s.records
    s.records = lambda plan, unread=frozenset(): (
        read.append(pos) or (pos, audio) if audio is not None else (pos, audio)
        for pos, audio in records(plan, unread))
    assert [it["id"] for it in s.stream(1, 0, 1, skip=10)] == full[10:]
    assert len(read) == N - 10  # the 10 skipped items were never read


def test_flac_files_and_segments_keep_their_bytes_and_offsets(write_wav, tmp_path):
    """FLAC is stored as its bytes (not re-encoded); a row that is a segment of a longer
    file keeps its offset and duration, and reads the same samples from the shard."""
    a = write_wav("a.flac", tone(300, seconds=2.0))
    b = write_wav("b.wav", tone(500, seconds=3.0), sr=8000)
    rows = [{"id": "a", "path": str(a)},
            {"id": "b1", "path": str(b), "offset": 0.5, "duration": 1.0},
            {"id": "b2", "path": str(b), "offset": 2.0, "duration": 0.75}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = write_shards(tmp_path / "m.jsonl", tmp_path / "s", seed=None, progress=False)
    assert s["items"] == 3 and s["seconds"] == pytest.approx(2.0 + 1.0 + 0.75)
    m, sharded = Manifest.load(tmp_path / "m.jsonl"), ShardIndex.load(tmp_path / "s").manifest()
    assert [r.extra["shard_member"] for r in sharded.rows] == ["000000000.flac", "000000001.wav",
                                                               "000000002.wav"]
    for row in sharded.rows:
        member = sharded.audio_path(row)
        assert member.read_bytes() == m.audio_path(m[row.id]).read_bytes()
        np.testing.assert_array_equal(
            load_audio(member, row.offset, row.duration),
            load_audio(m.audio_path(m[row.id]), row.offset, row.duration))


def test_m4a_files_are_sharded_as_their_bytes_and_decoded_from_the_shard(tmp_path):
    """AAC in MP4 (VoxCeleb2) goes into a shard unchanged and is decoded from the member's
    bytes (PyAV) to the same samples as from the file, a segment too."""
    pytest.importorskip("av")
    from paravox.audio import compressed

    x = tone(300, seconds=2.0)
    a = compressed.write_aac(tmp_path / "a.m4a", x, 16000)
    rows = [{"id": "a", "path": str(a)},
            {"id": "a1", "path": str(a), "offset": 0.75, "duration": 0.5}]
    (tmp_path / "m.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    s = write_shards(tmp_path / "m.jsonl", tmp_path / "s", seed=None, progress=False)
    assert s["items"] == 2 and s["seconds"] == pytest.approx(2.5, abs=0.01)
    m, sharded = Manifest.load(tmp_path / "m.jsonl"), ShardIndex.load(tmp_path / "s").manifest()
    for row in sharded.rows:
        member = sharded.audio_path(row)
        assert member.name.endswith(".m4a")
        assert member.read_bytes() == a.read_bytes()
        np.testing.assert_array_equal(
            load_audio(member, row.offset, row.duration),
            load_audio(m.audio_path(m[row.id]), row.offset, row.duration))
