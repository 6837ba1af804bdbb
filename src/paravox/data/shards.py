"""Tar shards of a manifest (``paravox shard``) and the index that tells readers what they hold.

A corpus of a million small files read at random starves a GPU on network or spinning disks;
the same audio in a few hundred tar files is read in long sequential runs. The layout is
WebDataset's (each item is the files of one key, next to each other in a plain tar), so
``webdataset`` reads paravox shards too, but reading them needs nothing beyond the standard
library (see docs/dependencies.md for why paravox reads them itself)::

    SHARDS/index.json         format, version, items, seconds, and per shard: file, items,
                              bytes, seconds; what a reader needs to know an epoch's size
    SHARDS/manifest.jsonl     the sharded items as a paravox manifest, in shard order: each row
                              as in the source manifest, its ``path`` naming its shard and
                              ``shard_member`` / ``shard_offset`` / ``shard_bytes`` / ``shard_key``
                              where its audio lies in it (labels, speakers: read from here)
    SHARDS/shard-000000.tar   KEY.json (the source manifest's row, unchanged) then KEY.wav /
                              .flac / ... (the audio file's bytes, unchanged: no re-encoding);
                              KEY is the row's index in the source manifest, 9 digits

Rows are shuffled once before they are cut into shards (``seed``), so every shard mixes
speakers; readers shuffle the shard order per epoch and items within a buffer
(:mod:`paravox.data.shard_stream`). An unreadable row is left out, listed in
``SHARDS/skipped.tsv`` and counted in the index: nothing is dropped silently.
"""

from __future__ import annotations

import io
import json
import tarfile
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from paravox.audio.io import AudioMember, audio_info
from paravox.data.manifest import Manifest, ManifestRow, json_lines, row_from_dict
from paravox.errors import AudioError, ConfigError, ManifestError
from paravox.utils.atomic_files import atomic_path, write_text
from paravox.utils.output_paths import check_not_input, check_output_folder

FORMAT, VERSION = "paravox-shards", 1
INDEX, MANIFEST, SKIPPED = "index.json", "manifest.jsonl", "skipped.tsv"
HEADER = 512  # a USTAR header: a member's data starts this far after its header
LOCATION = ("shard_member", "shard_offset", "shard_bytes", "shard_key")


@dataclass(frozen=True)
class ShardInfo:
    """One shard of an index: its file (relative to the index), how many items it holds,
    its size in bytes and the seconds of audio in it."""

    file: str
    items: int
    bytes: int
    seconds: float


class ShardedManifest(Manifest):
    """The manifest of a shard folder: rows as in the source manifest, whose audio is a
    member of a shard (:meth:`audio_path` gives an :class:`~paravox.audio.io.AudioMember`, which
    every audio reader accepts), so labels, babble noise and codebooks read shards as they
    read files."""

    def audio_path(self, row: ManifestRow) -> AudioMember:
        """Where ``row``'s audio lies: its shard, member name, byte offset and size."""
        try:
            member, offset, size = (row.extra[k] for k in LOCATION[:3])
            return AudioMember(row.resolve(self.root), str(member), int(offset), int(size))
        except (KeyError, TypeError, ValueError):
            raise ManifestError(f"{self.source}: row '{row.id}' has no shard location "
                                f"({', '.join(LOCATION[:3])}); write the shards again with "
                                f"`paravox shard`") from None

    def key(self, position: int) -> int:
        """The row's index in the source manifest (its tar key): what its random draws are
        keyed by, so an item gets the same crops from shards as from files."""
        return int(self.rows[position].extra.get("shard_key", position))


@dataclass
class ShardIndex:
    """A shard folder's ``index.json``, checked: the shards, their item counts and the total
    duration, which give the exact epoch size before a byte of audio is read."""

    path: Path
    shards: list[ShardInfo]
    items: int
    seconds: float
    source: str = ""

    @property
    def folder(self) -> Path:
        """The folder the shard files and the manifest are in."""
        return self.path.parent

    @classmethod
    def load(cls, path: str | Path) -> ShardIndex:
        """Read ``SHARDS/index.json`` (or the folder holding it); a missing shard, a count that
        does not add up or another format fails naming the file and what to do."""
        path = Path(path)
        if path.is_dir():
            path = path / INDEX
        if not path.is_file():
            raise ConfigError(f"shard index {path}: not found; write shards with `paravox "
                              f"shard MANIFEST -o FOLDER` and give FOLDER/{INDEX}")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            if d.get("format") != FORMAT:
                raise ValueError(f"format is {d.get('format')!r}, not {FORMAT!r}")
            if d.get("version") != VERSION:
                raise ValueError(f"version {d.get('version')!r}; this paravox reads {VERSION}")
            shards = [ShardInfo(str(s["file"]), int(s["items"]), int(s["bytes"]),
                                float(s["seconds"])) for s in d["shards"]]
            items, seconds = int(d["items"]), float(d["seconds"])
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ConfigError(f"shard index {path}: not a paravox shard index ({exc}); write "
                              f"it again with `paravox shard`") from None
        if sum(s.items for s in shards) != items or items == 0:
            raise ConfigError(f"shard index {path}: {items} items, but its shards hold "
                              f"{sum(s.items for s in shards)}; write it again with "
                              f"`paravox shard`")
        for s in shards:
            f = path.parent / s.file
            if Path(s.file).name != s.file or not f.is_file() or f.stat().st_size < s.bytes:
                raise ConfigError(f"shard index {path}: shard {f} is missing or shorter than "
                                  f"its {s.bytes} bytes; copy the whole shard folder")
        return cls(path, shards, items, seconds, str(d.get("source", "")))

    def manifest(self) -> ShardedManifest:
        """The sharded items' manifest (``manifest.jsonl``), checked against the index."""
        path = self.folder / MANIFEST
        if not path.is_file():
            raise ConfigError(f"{path}: not found beside {self.path}; copy the whole shard "
                              f"folder")
        # the shard location fields are known here: no unknown-field warning as for a manifest
        rows = [row_from_dict(d, f"{path}:{n}") for n, d in json_lines(path)]
        if len(rows) != self.items:
            raise ConfigError(f"{path}: {len(rows)} rows, but {self.path} counts "
                              f"{self.items} items; write the shards again with `paravox "
                              f"shard`")
        return ShardedManifest(rows, root=self.folder.resolve(), source=str(path))

    def starts(self) -> list[int]:
        """Position of each shard's first item in ``manifest.jsonl``."""
        return [int(x) for x in np.cumsum([0] + [s.items for s in self.shards])[:-1]]


def shard_name(i: int) -> str:
    """The file name of shard ``i``."""
    return f"shard-{i:06d}.tar"


def prepare_folder(out: Path, overwrite: bool) -> None:
    """An empty (or new) output folder; one holding shards is emptied of them with
    ``overwrite``; a folder of other files is refused (``--overwrite`` deletes only shards)."""
    check_output_folder(out, "-o")
    if not out.exists():
        return
    ours = [p for p in out.iterdir() if p.name in (INDEX, MANIFEST, SKIPPED)
            or (p.name.startswith("shard-") and p.suffix == ".tar")]
    others = [p.name for p in out.iterdir() if p not in ours]
    if others:
        raise ConfigError(f"-o {out}: holds files that are not shards ({', '.join(others[:3])}"
                          f"); give an empty or new folder")
    if ours and not overwrite:
        raise ConfigError(f"-o {out}: already holds shards; add --overwrite to replace them")
    for p in ours:
        p.unlink()


def tar_member(tar: tarfile.TarFile, name: str, data: bytes) -> int:
    """Append ``data`` as member ``name`` (fixed owner, mode and time, so the same manifest
    gives the same bytes); returns the offset of the data in the tar file."""
    info = tarfile.TarInfo(name)
    info.size, info.mode, info.mtime = len(data), 0o644, 0
    start = tar.offset
    tar.addfile(info, io.BytesIO(data))
    return start + HEADER


def read_row_audio(m: Manifest, row: ManifestRow) -> tuple[bytes, float]:
    """The row's audio file as bytes and the row's seconds (its ``duration``, else the file's
    length after ``offset``); unreadable audio raises AudioError naming the file."""
    path = m.audio_path(row)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise AudioError(path, f"cannot be read ({exc.strerror or exc})",
                         "check the manifest's path", kind="missing") from None
    info = audio_info(AudioMember(Path(path), Path(path).name, data=data))
    seconds = row.duration if row.duration is not None else info.duration - row.offset
    if info.frames == 0 or seconds <= 0:
        raise AudioError(path, "holds no samples after the row's offset",
                         "fix or drop the row", kind="empty")
    return data, float(seconds)


def write_shards(manifest: str | Path, out: str | Path, shard_mb: float = 256.0,
                 shard_items: int | None = None, seed: int | None = 0,
                 overwrite: bool = False, progress: bool = True) -> dict:
    """Cut ``manifest`` into tar shards in ``out`` (see the module docstring for the layout).

    A shard is closed once it holds ``shard_mb`` megabytes or ``shard_items`` items; rows are
    shuffled with ``seed`` first (``None`` keeps the manifest's order). Returns the index's
    numbers plus ``skipped`` (rows left out, listed in ``skipped.tsv``)."""
    out = Path(out)
    if not shard_mb > 0 or (shard_items is not None and shard_items < 1):
        raise ConfigError(f"shard size: --shard-mb={shard_mb} must be > 0 and --shard-items="
                          f"{shard_items} >= 1")
    check_not_input(out / MANIFEST, [("manifest", manifest)], "-o")
    m = Manifest.load(manifest)
    if len(m) == 0:
        raise ManifestError(f"manifest {manifest} has no rows")
    prepare_folder(out, overwrite)
    out.mkdir(parents=True, exist_ok=True)
    order = (np.arange(len(m)) if seed is None
             else np.random.default_rng([seed]).permutation(len(m)))
    limit_bytes, limit_items = int(shard_mb * 1e6), shard_items or len(m)
    shards: list[ShardInfo] = []
    rows: list[ManifestRow] = []
    skipped: list[tuple[str, str]] = []
    todo = iter(tqdm(order.tolist(), desc=f"shard {Path(manifest).name}", unit="utt",
                     disable=not progress, mininterval=1.0))
    pending = next(todo, None)
    while pending is not None:
        name = shard_name(len(shards))
        n = size = 0
        seconds = 0.0
        with atomic_path(out / name) as tmp, tarfile.open(tmp, "w",
                                                            format=tarfile.USTAR_FORMAT) as tar:
            while pending is not None and n < limit_items and (n == 0 or size < limit_bytes):
                i, pending = pending, next(todo, None)
                row = m.rows[i]
                try:
                    data, secs = read_row_audio(m, row)
                except AudioError as exc:
                    skipped.append((row.id, f"{exc.kind}: {exc}"))
                    continue
                key = f"{i:09d}"
                suffix = Path(row.path).suffix.lower() or ".audio"
                tar_member(tar, f"{key}.json", (row.to_json() + "\n").encode("utf-8"))
                offset = tar_member(tar, key + suffix, data)
                location = dict(zip(LOCATION, (key + suffix, offset, len(data), i)))
                rows.append(replace(row, path=name, extra={**row.extra, **location}))
                n, size, seconds = n + 1, tar.offset, seconds + secs
        if n == 0:
            (out / name).unlink()
        else:
            shards.append(ShardInfo(name, n, (out / name).stat().st_size, round(seconds, 3)))
    if not rows:
        raise ManifestError(f"{manifest}: no row has readable audio ({len(skipped)} skipped, "
                            f"e.g. {skipped[0][1] if skipped else '-'}); nothing to shard")
    with atomic_path(out / MANIFEST) as tmp, open(tmp, "w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(r.to_json() + "\n")
    if skipped:
        write_text(out / SKIPPED, "id\treason\n" + "".join(
            f"{rid}\t{' '.join(why.split())}\n" for rid, why in skipped))
    total = round(sum(s.seconds for s in shards), 3)
    index = {"format": FORMAT, "version": VERSION, "source": str(manifest),
             "shuffle_seed": seed, "items": len(rows), "seconds": total,
             "skipped": len(skipped), "manifest": MANIFEST,
             "shards": [vars(s) for s in shards]}
    write_text(out / INDEX, json.dumps(index, indent=1) + "\n")
    return {"items": len(rows), "seconds": total, "shards": len(shards),
            "bytes": sum(s.bytes for s in shards), "skipped": len(skipped),
            "index": str(out / INDEX)}
