"""Writing embeddings: one .npz, one .npy per utterance, or a Kaldi binary ark + scp."""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

FORMATS = ("npz", "npy", "ark")


def write_embeddings(embeddings: dict[str, np.ndarray], out: str | Path, fmt: str = "npz"
                     ) -> Path:
    """Write ``{utterance id: vector}`` under folder ``out``; returns the main file/folder."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if fmt == "npz":
        path = out / "embeddings.npz"
        np.savez(path, **embeddings)
        return path
    if fmt == "npy":
        for uid, vec in embeddings.items():
            np.save(out / f"{uid}.npy", vec.astype(np.float32))
        return out
    if fmt == "ark":
        return write_kaldi_ark(embeddings, out / "embeddings.ark")
    raise ValueError(f"format '{fmt}': choose one of {FORMATS}")


def write_kaldi_ark(embeddings: dict[str, np.ndarray], path: str | Path) -> Path:
    """Kaldi binary float vectors (``FV``), readable by ``copy-vector`` / kaldi_io, with an
    ``.scp`` index (``utt path:offset``) beside it."""
    path = Path(path)
    scp = []
    with open(path, "wb") as fh:
        for uid, vec in embeddings.items():
            if " " in uid:
                raise ValueError(f"utterance id '{uid}' contains a space: Kaldi ids cannot")
            fh.write(uid.encode() + b" ")
            scp.append(f"{uid} {path}:{fh.tell()}")
            v = np.asarray(vec, dtype="<f4").ravel()
            fh.write(b"\0BFV " + b"\4" + struct.pack("<i", v.size) + v.tobytes())
    path.with_suffix(".scp").write_text("\n".join(scp) + "\n")
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
