"""Writing embeddings: one .npz, one .npy per utterance, or a Kaldi binary ark + scp; and the
``bad_items.tsv`` of the utterances that could not be embedded.

Utterance ids come from manifests, so they are never trusted as file names:

- ``npy``: each file is named :func:`safe_name` of its id + ``.npy``: every character outside
  ``[A-Za-z0-9._-]`` is percent-encoded (``a/b`` -> ``a%2Fb``, ``../x`` ->
  ``..%2Fx``) and the names ``.``/``..`` become ``%2E``/``%2E%2E``, so no file lands outside
  the output folder; ``index.tsv`` beside them maps each id to its file.
- ``npz``: the member (key) of each id is the same :func:`safe_name`, because a ``/`` in a
  zip member name makes a folder (and ``../`` a path out of it) for whoever unzips the file,
  and numpy's own ``savez`` drops or refuses keys named like its arguments (``file``,
  ``allow_pickle``). Ids of ``[A-Za-z0-9._-]`` keep their keys; ``urllib.parse.unquote(key)``
  (or :func:`read_embeddings`) gives any id back.
- ``ark``: Kaldi keys cannot contain whitespace, so an id with any is refused, naming it,
  before anything is written; ark and scp are written to temporary files and renamed into
  place, so a failure never leaves a partial ark or an ark without its scp.

Every file (each ``.npy`` too) is written to a temporary name beside it, synced and renamed
when complete (:mod:`paravox.utils.atomic_files`): a full disk half-way leaves the files
written so far whole, the previous version of the others as it was, and no empty or
truncated file.
"""

from __future__ import annotations

import string
import struct
import zipfile
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote

import numpy as np

from paravox.errors import ParavoxError
from paravox.utils.atomic_files import atomic_open, atomic_path, make_folder, write_bytes

FORMATS = ("npz", "npy", "ark")
SAFE_CHARS = frozenset(string.ascii_letters + string.digits + "._-")
INDEX = "index.tsv"
BAD_ITEMS = "bad_items.tsv"
NAME_MAX = 255  # bytes in one file name on common file systems


class UnsafeIdError(ParavoxError, ValueError):
    """An utterance id that the chosen output format cannot hold (the message names it)."""


def safe_name(uid: str) -> str:
    """``uid`` as a file name / npz key: characters outside ``[A-Za-z0-9._-]`` percent-encoded
    (UTF-8 bytes, ``%XX``), ``.`` and ``..`` as ``%2E`` and ``%2E%2E``. Reversible with
    :func:`id_from_name` (``%`` itself is encoded), so distinct ids get distinct names."""
    if uid in (".", ".."):
        return "%2E" * len(uid)
    return "".join(c if c in SAFE_CHARS else "".join(f"%{b:02X}" for b in c.encode("utf-8"))
                   for c in uid)


def id_from_name(name: str) -> str:
    """The utterance id of a :func:`safe_name` (a file stem or an npz key)."""
    return unquote(name)


def _refuse(bad: list[str], why: str, fix: str) -> None:
    if bad:
        shown = ", ".join(repr(b) for b in bad[:5]) + (f" and {len(bad) - 5} more"
                                                        if len(bad) > 5 else "")
        raise UnsafeIdError(f"{len(bad)} utterance id(s) {why}: {shown}; {fix}")


def check_ids(ids: Iterable[str], fmt: str) -> None:
    """Refuse, before anything is computed or written, the ids format ``fmt`` cannot hold:
    empty ids, ids with control characters (tab, newline: they would break ``index.tsv``),
    for ``ark`` ids with whitespace (Kaldi keys cannot have any), for ``npy`` ids whose file
    name would be longer than 255 bytes. Raises :class:`UnsafeIdError` naming them."""
    if fmt not in FORMATS:
        raise ParavoxError(f"format '{fmt}': choose one of {FORMATS}")
    ids = list(ids)
    _refuse([u for u in ids if not isinstance(u, str) or not u], "are empty or not strings",
            "give every utterance an id")
    if fmt == "ark":
        _refuse([u for u in ids if any(c.isspace() for c in u)], "contain whitespace, which "
                "Kaldi keys cannot", "rename them in the manifest, or write --format npz/npy")
        return
    _refuse([u for u in ids if any(ord(c) < 32 or ord(c) == 127 for c in u)],
            "contain control characters (tab, newline)", "rename them in the manifest")
    if fmt == "npy":
        _refuse([u for u in ids if len(safe_name(u).encode()) + 4 > NAME_MAX],
                f"are too long for a file name once escaped (over {NAME_MAX} bytes)",
                "shorten them, or write --format npz/ark")


def write_embeddings(embeddings: dict[str, np.ndarray], out: str | Path, fmt: str = "npz"
                     ) -> Path:
    """Write ``{utterance id: vector}`` under folder ``out``; returns the main file/folder.

    ``npz``: ``out/embeddings.npz`` keyed by :func:`safe_name` of each id; ``npy``:
    ``out/<safe_name>.npy`` per utterance plus ``out/index.tsv`` (``id``, ``file``);
    ``ark``: ``out/embeddings.ark`` + ``.scp``. Ids are checked first (:func:`check_ids`), so
    a refused id leaves nothing written; nothing is ever written outside ``out``."""
    check_ids(embeddings, fmt)
    out = Path(out)
    make_folder(out)
    if fmt == "npz":
        return write_npz(embeddings, out / "embeddings.npz")
    if fmt == "npy":
        lines = ["id\tfile"]
        for uid, vec in embeddings.items():
            name = safe_name(uid) + ".npy"
            with atomic_open(out / name, "wb") as fh:
                np.save(fh, np.asarray(vec).astype(np.float32))
            lines.append(f"{uid}\t{name}")
        write_bytes(out / INDEX, ("\n".join(lines) + "\n").encode())
        return out
    return write_kaldi_ark(embeddings, out / "embeddings.ark")


def write_npz(embeddings: dict[str, np.ndarray], path: str | Path) -> Path:
    """An uncompressed ``.npz`` (what ``np.savez`` writes) whose keys are :func:`safe_name`
    of the ids, written to a temporary file and renamed into place. Any id works, including
    the ``file``/``allow_pickle`` that ``np.savez(**embeddings)`` cannot take."""
    path = Path(path)
    with atomic_path(path) as tmp, zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_STORED,
                                                   allowZip64=True) as zf:
        for uid, vec in embeddings.items():
            with zf.open(safe_name(uid) + ".npy", "w", force_zip64=True) as fh:
                np.lib.format.write_array(fh, np.asanyarray(vec), allow_pickle=False)
    return path


def write_kaldi_ark(embeddings: dict[str, np.ndarray], path: str | Path) -> Path:
    """Kaldi binary float vectors (``FV``), readable by ``copy-vector`` / kaldi_io, with an
    ``.scp`` index (``utt path:offset``) beside it. Ids with whitespace are refused before
    writing (:class:`UnsafeIdError`); both files are written to temporary files and renamed
    into place only when complete."""
    check_ids(embeddings, "ark")
    path = Path(path)
    scp = []
    # both complete before either is renamed; the ark first, then its scp
    with atomic_path(path.with_suffix(".scp")) as scp_tmp, atomic_path(path) as ark_tmp:
        with open(ark_tmp, "wb") as fh:
            for uid, vec in embeddings.items():
                fh.write(uid.encode() + b" ")
                scp.append(f"{uid} {path}:{fh.tell()}")
                v = np.asarray(vec, dtype="<f4").ravel()
                fh.write(b"\0BFV " + b"\4" + struct.pack("<i", v.size) + v.tobytes())
        scp_tmp.write_text("\n".join(scp) + "\n")
    return path


def read_kaldi_ark(path: str | Path) -> dict[str, np.ndarray]:
    """Read a binary ark of float vectors written by :func:`write_kaldi_ark` (or Kaldi)."""
    data, out, i = Path(path).read_bytes(), {}, 0
    while i < len(data):
        j = data.index(b" ", i)
        uid = data[i:j].decode()
        if data[j + 1:j + 6] != b"\0BFV ":
            raise ValueError(f"{path}: '{uid}' is not a binary float vector")
        n = struct.unpack("<i", data[j + 7:j + 11])[0]
        out[uid] = np.frombuffer(data[j + 11:j + 11 + 4 * n], dtype="<f4").copy()
        i = j + 11 + 4 * n
    return out


def read_embeddings(path: str | Path) -> dict[str, np.ndarray]:
    """``{utterance id: vector}`` from what :func:`write_embeddings` wrote: an ``.npz``, an
    ``.ark``, or a folder of ``.npy`` files (through its ``index.tsv``); escaped names are
    turned back into the ids."""
    path = Path(path)
    if path.is_dir():
        index = path / INDEX
        if not index.is_file():
            raise ParavoxError(f"{index} not found: is {path} a folder written with "
                               f"--format npy?")
        rows = [line.split("\t") for line in index.read_text().splitlines()[1:] if line]
        return {uid: np.load(path / name) for uid, name in rows}
    if path.suffix == ".ark":
        return read_kaldi_ark(path)
    with np.load(path, allow_pickle=False) as npz:
        return {id_from_name(k): npz[k] for k in npz.files}


def write_bad_items(items: Iterable, out: str | Path) -> Path:
    """``out/bad_items.tsv``: one line per item that could not be embedded (``id``, ``path``,
    ``reason``; anything with ``.id``, ``.path``, ``.reason``), tabs and newlines inside a
    field replaced by spaces."""
    out = Path(out)
    make_folder(out)

    def clean(s) -> str:
        return " ".join(str(s).replace("\t", " ").splitlines())

    lines = ["id\tpath\treason"] + [f"{clean(b.id)}\t{clean(b.path)}\t{clean(b.reason)}"
                                     for b in items]
    write_bytes(out / BAD_ITEMS, ("\n".join(lines) + "\n").encode())
    return out / BAD_ITEMS
