"""Phone classification on frozen frame-level features (the SUPERB / Mockingjay probe).

Every encoder layer (and the log-mel features, the floor any layer should beat) is read on
the corpus' 10 ms phone-label grid: label frame ``k`` is centred at ``k * frame_shift``
seconds, and each layer contributes its frame nearest in time
(:func:`paravox.models.base.frames_at`), so layers of any frame rate and offset line up
with the labels. Small probes are trained on standardised features of the train split, in
torch: ``linear`` (one ``Linear``) and ``mlp`` (``Linear``-ReLU-``Linear``), plus a
SUPERB-style learned softmax-weighted sum of layers with a linear probe (``weighted``).

Metrics on the test split (:mod:`paravox.evaluation.frame_metrics`): frame accuracy, and
phone error rate (PER) of the collapsed frame sequences against the collapsed reference.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from paravox.audio.features import FeatureConfig, LogMelFilterbank
from paravox.audio.io import load_audio
from paravox.data.manifest import Manifest, ManifestRow
from paravox.errors import ConfigError, ManifestError
from paravox.evaluation.frame_metrics import frame_accuracy, mode_filter, phone_error_rate
from paravox.inference.batching import WINDOW_ROWS
from paravox.inference.embedder import Embedder
from paravox.inference.frame_features import frontend_frame_shift
from paravox.models.base import FrameLayer, frames_at

LOGMEL = "log-mel"  # the name of the log-mel source in result tables
WEIGHTED = "weighted"  # the name of the weighted-sum row
PROBES = ("linear", "mlp")
# frames an alignment may differ from its audio's frame count: the edge conventions of forced
# aligners (Kaldi's snip-edges drops the 2-3 frames a 25 ms window cannot centre)
ALIGNMENT_SLACK = 3


@dataclass
class PhoneProbeConfig:
    """Settings of :func:`phone_probe`."""

    probes: Sequence[str] = ("linear", "mlp")  # per-layer probes: linear | mlp
    mlp_hidden: int = 256
    epochs: int = 5
    lr: float = 1e-3
    batch_size: int = 256
    weight_decay: float = 0.0
    max_train_frames: int | None = 60000  # uniform seeded subsample of train label frames
    max_utterances: int | None = None  # per split, a seeded subset (None: all)
    layers: str | Sequence[int | str] = "all"  # encoder layers to probe ("all", indices, names)
    weighted: bool = True  # also a learned softmax-weighted sum of layers + linear probe
    include_logmel: bool = True  # with an Embedder source: also the log-mel floor's rows
    seed: int = 0
    drop_silence_in_per: bool = True
    # PER reads predictions after a majority (mode) filter of this many frames (odd; 1 = raw):
    # raw frame-wise argmax flickers, and every flicker is an insertion once runs collapse
    per_smoothing: int = 9
    silence: str = "sil"  # the silence label dropped from PER sequences
    device: str = "cpu"


# --------------------------------------------------------------------------------- features


@dataclass
class SplitFeatures:
    """One split's features on the label grid: every source ``[N, C]`` over the kept label
    frames of all utterances, their labels, and where each utterance's frames are."""

    feats: dict[str, np.ndarray]
    labels: np.ndarray  # [N] phone names (object array)
    bounds: list[tuple[int, int]]  # per utterance: [start, end) into the rows above
    ids: list[str]


def _pick_rows(manifest: Manifest, max_utterances: int | None, seed: int, split: str
               ) -> list[ManifestRow]:
    rows = [r for r in manifest if r.alignment is not None and r.alignment.num_frames > 0]
    if not rows:
        raise ConfigError(f"{split} manifest {manifest.source}: no row has a phone "
                          f"'alignment'; the phone probe needs frame-level phone labels")
    if max_utterances is not None and len(rows) > max_utterances:
        keep = np.random.default_rng([seed, 1]).choice(len(rows), max_utterances,
                                                       replace=False)
        rows = [rows[i] for i in sorted(keep)]
    return rows


def _train_frame_subset(rows: list[ManifestRow], max_frames: int | None, seed: int
                        ) -> list[np.ndarray | None]:
    """Per row, the label frames kept for training (None: all): a uniform subsample of
    ``max_frames`` of all train label frames, drawn with a seeded RNG."""
    counts = np.array([r.alignment.num_frames for r in rows])
    total = int(counts.sum())
    if max_frames is None or total <= max_frames:
        return [None] * len(rows)
    chosen = np.sort(np.random.default_rng([seed, 2]).choice(total, max_frames,
                                                             replace=False))
    starts = np.concatenate([[0], np.cumsum(counts)])
    return [chosen[(chosen >= a) & (chosen < b)] - a for a, b in zip(starts[:-1], starts[1:])]


def on_label_grid(frames: np.ndarray, shift: float, offset: float, n_labels: int,
                  label_shift: float = 0.01) -> np.ndarray:
    """``frames`` ``[T_l, C]`` read at the label frames ``k * label_shift``
    (``k < n_labels``): the nearest frame to each, ``[n_labels, C]``."""
    layer = FrameLayer("", torch.from_numpy(np.ascontiguousarray(frames[None])), None,
                       shift, offset)
    return frames[frames_at(layer, np.arange(n_labels) * label_shift)]


class _LogMel:
    """Log-mel frames of a wave: the bundle's own front end when it is log-mel, else the
    default :class:`FeatureConfig`."""

    def __init__(self, source):
        fbank = getattr(source, "fbank", None)
        self.fbank = (fbank if isinstance(fbank, LogMelFilterbank)
                      else LogMelFilterbank(FeatureConfig())).eval()
        self.device = next(iter(self.fbank.buffers())).device
        self.shift = frontend_frame_shift(self.fbank)
        self.sample_rate = self.fbank.cfg.sample_rate

    @torch.no_grad()
    def __call__(self, wave: np.ndarray) -> np.ndarray:
        feats, _ = self.fbank(torch.from_numpy(wave[None]).to(self.device))
        return feats[0].float().cpu().numpy()


def check_alignment_covers(row: ManifestRow, n_samples: int, sample_rate: int,
                           split: str, source: str) -> None:
    """Refuse a row whose alignment does not cover its audio (more than
    :data:`ALIGNMENT_SLACK` frames too few or too many, e.g. 3 frames of a 3 s file): its
    labels would be read against the wrong frames (nearest-frame clamping repeats the last
    one), and the probe would train and score on them without a word."""
    ali = row.alignment
    hop = max(int(round(sample_rate * ali.frame_shift)), 1)
    need = n_samples // hop + 1
    if abs(ali.num_frames - need) > ALIGNMENT_SLACK:
        raise ManifestError(
            f"{split} manifest {source}: row '{row.id}': its alignment covers "
            f"{ali.num_frames} frames ({ali.num_frames * ali.frame_shift:.2f} s) but its audio "
            f"has {need} ({n_samples / sample_rate:.2f} s), so its labels do not match the "
            f"audio; fix the alignment or drop the row (`paravox manifest validate {source} "
            f"--fix OUT.jsonl` drops every such row)")


def extract_split(source, manifest: Manifest, rows: list[ManifestRow], layers,
                  keep: list[np.ndarray | None] | None = None, bar=None,
                  include_logmel: bool = True, split: str = "") -> SplitFeatures:
    """Features of ``rows`` on their label grids: log-mel, and (``source`` an
    :class:`Embedder`) the chosen encoder layers, one whole-utterance forward each
    (:meth:`~paravox.inference.Embedder.frames_many`: padded batches where exact).
    ``keep``: per row, the label frames to keep (None: all). A row whose alignment does not
    cover its audio is refused (:func:`check_alignment_covers`)."""
    logmel = _LogMel(source)
    sr = logmel.sample_rate if not isinstance(source, Embedder) else source.sample_rate
    parts: dict[str, list[np.ndarray]] = {}
    labels, bounds, start = [], [], 0
    for first in range(0, len(rows), WINDOW_ROWS):  # a window of rows in memory at a time
        window = rows[first:first + WINDOW_ROWS]
        waves = []
        for row in window:
            wave = load_audio(manifest.audio_path(row), row.offset, row.duration,
                              target_sr=sr)
            check_alignment_covers(row, len(wave), sr, split, manifest.source)
            waves.append(wave)
        # the encoder's layers for the whole window (padded batches where exact)
        found = (source.frames_many(waves, layers) if isinstance(source, Embedder)
                 else [None] * len(window))
        for i, (row, wave, ff) in enumerate(zip(window, waves, found), start=first):
            ali = row.alignment
            lab = np.asarray(ali.frame_labels(), dtype=object)
            sel = None if keep is None else keep[i]
            sources: dict[str, tuple[np.ndarray, float, float]] = {}
            if include_logmel or not isinstance(source, Embedder):
                sources[LOGMEL] = (logmel(wave), logmel.shift, 0.0)
            if ff is not None:
                for name, arr in ff.layers.items():
                    sources[name] = (arr, ff.shift[name], ff.offset[name])
            for name, (arr, shift, offset) in sources.items():
                grid = on_label_grid(arr, shift, offset, len(lab), ali.frame_shift)
                parts.setdefault(name, []).append(grid if sel is None else grid[sel])
            lab = lab if sel is None else lab[sel]
            labels.append(lab)
            bounds.append((start, start + len(lab)))
            start += len(lab)
            if bar is not None:
                bar.update(1)
    return SplitFeatures({k: np.concatenate(v).astype(np.float32) for k, v in parts.items()},
                         np.concatenate(labels), bounds, [r.id for r in rows])


# ----------------------------------------------------------------------------------- probes


class WeightedSumProbe(nn.Module):
    """SUPERB's layer combination: ``logits = W (sum_l softmax(w)_l x_l) + b`` over
    standardised layers ``x_l`` of one width, the weights ``w`` learned with the probe."""

    def __init__(self, n_layers: int, dim: int, n_classes: int):
        super().__init__()
        self.layer_weights = nn.Parameter(torch.zeros(n_layers))
        self.linear = nn.Linear(dim, n_classes)

    def forward(self, *xs: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.layer_weights, dim=0)
        return self.linear(sum(w[i] * x for i, x in enumerate(xs)))


class _Single(nn.Module):
    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def make_probe(kind: str, dim: int, n_classes: int, hidden: int = 256) -> nn.Module:
    """``linear``: ``Linear(dim, n_classes)``; ``mlp``: ``Linear-ReLU-Linear`` with
    ``hidden`` units (the two frame-level probes of the SUPERB/Mockingjay protocol)."""
    if kind == "linear":
        return _Single(nn.Linear(dim, n_classes))
    if kind == "mlp":
        return _Single(nn.Sequential(nn.Linear(dim, hidden), nn.ReLU(),
                                     nn.Linear(hidden, n_classes)))
    raise ConfigError(f"probe '{kind}' is unknown; choose from {list(PROBES)}")


def standardise(train: np.ndarray, *others: np.ndarray) -> list[torch.Tensor]:
    """``(x - mean) / std`` with mean and std of the train frames, for train and others."""
    mean = train.mean(0, keepdims=True)
    std = np.maximum(train.std(0, keepdims=True), 1e-5)
    return [torch.from_numpy(((x - mean) / std).astype(np.float32)) for x in (train, *others)]


def train_probe(model: nn.Module, inputs: list[torch.Tensor], targets: torch.Tensor,
                cfg: PhoneProbeConfig, seed: int = 0) -> nn.Module:
    """Minimise the mean frame cross-entropy ``-log softmax(model(x))_y`` with Adam over
    shuffled mini-batches for ``cfg.epochs`` epochs (seeded shuffling)."""
    device = torch.device(cfg.device)
    model = model.to(device).train()
    inputs = [x.to(device) for x in inputs]
    targets = targets.to(device)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(seed)
    n = len(targets)
    for _ in range(cfg.epochs):
        for idx in torch.randperm(n, generator=gen).split(cfg.batch_size):
            idx = idx.to(device)
            loss = nn.functional.cross_entropy(model(*[x[idx] for x in inputs]),
                                               targets[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return model.eval()


@torch.no_grad()
def predict(model: nn.Module, inputs: list[torch.Tensor], batch_size: int = 4096,
            device: str = "cpu") -> np.ndarray:
    """Class indices ``argmax model(x)`` of every frame."""
    n = len(inputs[0])
    out = [model(*[x[i:i + batch_size].to(device) for x in inputs]).argmax(-1).cpu()
           for i in range(0, n, batch_size)]
    return torch.cat(out).numpy() if out else np.zeros(0, dtype=np.int64)


def weighted_layers(widths: dict[str, int]) -> list[str]:
    """The layers a weighted sum combines: those of the most common channel width (ties:
    the width whose last layer is deepest); other widths cannot be summed and are left
    out. Fewer than two such layers: none (the sum would be one layer's probe)."""
    if not widths:
        return []
    counts = Counter(widths.values())
    names = list(widths)
    best = max(counts, key=lambda w: (counts[w], max(i for i, n in enumerate(names)
                                                     if widths[n] == w)))
    chosen = [n for n in names if widths[n] == best]
    return chosen if len(chosen) >= 2 else []


# ----------------------------------------------------------------------------------- result


@dataclass
class PhoneProbeResult:
    """Per-(layer, probe) frame accuracy and PER on the test split, the weighted-sum row
    (layer ``"weighted"``), its learned layer weights, and the phone inventory."""

    source: str
    table: list[dict]  # {layer, probe, frame_accuracy, per, n_train_frames, n_test_frames}
    phones: list[str]
    layer_weights: dict[str, float] | None = None
    n_train_utterances: int = 0
    n_test_utterances: int = 0
    extra: dict = field(default_factory=dict)

    @property
    def best(self) -> dict:
        """The highest frame accuracy of the linear probe over the encoder's layers (the
        log-mel row only when it is the only source); the first probe without linear."""
        probe = "linear" if any(r["probe"] == "linear" for r in self.table) else (
            self.table[0]["probe"])
        rows = [r for r in self.table if r["probe"] == probe and r["layer"] != WEIGHTED]
        layers = [r for r in rows if r["layer"] != LOGMEL] or rows or self.table
        return dict(max(layers, key=lambda r: r["frame_accuracy"]))

    def row(self, layer: str, probe: str = "linear") -> dict:
        """The row of one (layer, probe)."""
        for r in self.table:
            if r["layer"] == layer and r["probe"] == probe:
                return dict(r)
        raise KeyError(f"no row for layer '{layer}', probe '{probe}'")

    def rows(self) -> list[dict]:
        """Every row as a plain dict (JSON)."""
        return [dict(r) for r in self.table]

    def summary(self) -> dict:
        """The headline numbers: source, phones, chance (``1 / n_phones``), the best layer,
        the log-mel floor and the weighted sum (linear probes), and the layer weights."""
        out = {"source": self.source, "n_phones": len(self.phones),
               "chance": 1.0 / max(len(self.phones), 1),
               "n_train_utterances": self.n_train_utterances,
               "n_test_utterances": self.n_test_utterances, "best": self.best}
        for key, layer in (("log_mel", LOGMEL), ("weighted", WEIGHTED)):
            rows = [r for r in self.table if r["layer"] == layer and r["probe"] == "linear"]
            if rows:
                out[key] = dict(rows[0])
        if self.layer_weights:
            out["layer_weights"] = dict(self.layer_weights)
        return out

    def format_table(self) -> str:
        """A Markdown table of the rows."""
        lines = ["| layer | probe | frame acc. | PER |", "|---|---|---:|---:|"]
        lines += [f"| {r['layer']} | {r['probe']} | {100 * r['frame_accuracy']:.1f} % | "
                  f"{100 * r['per']:.1f} % |" for r in self.table]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------ probe


def phone_probe(source: Embedder | str, train_manifest: Manifest, test_manifest: Manifest,
                cfg: PhoneProbeConfig | None = None, progress: bool = True
                ) -> PhoneProbeResult:
    """Phone classification with frozen frame features of ``source`` (an
    :class:`Embedder`: log-mel + its layers; ``"logmel"``: log-mel only), trained on
    ``train_manifest``'s and scored on ``test_manifest``'s phone alignments.

    The phone inventory is the train split's; test frames of other phones count as errors.
    Every test frame of every layer is held in memory (PER needs whole utterances): bound
    it with ``cfg.max_utterances`` and ``cfg.layers`` for large models and test sets.
    """
    return phone_probe_splits(source, train_manifest, {"test": test_manifest}, cfg,
                              progress)["test"]


def phone_probe_splits(source: Embedder | str, train_manifest: Manifest,
                       test_manifests: dict[str, Manifest], cfg: PhoneProbeConfig | None = None,
                       progress: bool = True) -> dict[str, PhoneProbeResult]:
    """:func:`phone_probe` scored on several test splits (e.g. a channel-degraded test split
    and a clean dev split): the features of the training split are extracted and every probe
    is trained once, then each split is scored. Each split's result equals what
    :func:`phone_probe` gives for it alone."""
    cfg = cfg or PhoneProbeConfig()
    if isinstance(source, str):
        if source != "logmel":
            raise ConfigError(f"phone_probe source '{source}': pass an Embedder or 'logmel'")
        name = "logmel"
    elif isinstance(source, Embedder):
        name = str(source.config.get("encoder", "encoder"))
    else:
        raise ConfigError(f"phone_probe source: an Embedder or 'logmel', not "
                          f"{type(source).__name__}")
    if not cfg.probes:
        raise ConfigError(f"probes is empty; name at least one of {list(PROBES)}")
    for kind in cfg.probes:
        if kind not in PROBES:
            raise ConfigError(f"probes: '{kind}' is unknown; choose from {list(PROBES)}")
    if not test_manifests:
        raise ConfigError("phone probe: no test split given")
    train_rows = _pick_rows(train_manifest, cfg.max_utterances, cfg.seed, "train")
    test_rows = {k: _pick_rows(m, cfg.max_utterances, cfg.seed + 1, k)
                 for k, m in test_manifests.items()}
    keep = _train_frame_subset(train_rows, cfg.max_train_frames, cfg.seed)
    with tqdm(total=len(train_rows) + sum(map(len, test_rows.values())),
              desc="extracting features", unit="utt", disable=not progress) as bar:
        train = extract_split(source, train_manifest, train_rows, cfg.layers, keep, bar,
                              cfg.include_logmel, "train")
        tests = {k: extract_split(source, test_manifests[k], rows, cfg.layers, None, bar,
                                  cfg.include_logmel, k) for k, rows in test_rows.items()}
    splits = list(tests)

    phones = sorted(set(train.labels.tolist()))
    index = {p: i for i, p in enumerate(phones)}
    y_train = torch.tensor([index[p] for p in train.labels], dtype=torch.long)
    refs = {k: [t.labels[a:b] for a, b in t.bounds] for k, t in tests.items()}
    silence = cfg.silence if cfg.drop_silence_in_per else None
    names = list(train.feats)
    dims = {n: train.feats[n].shape[1] for n in names}
    widths = {n: d for n, d in dims.items() if n != LOGMEL}
    combined = weighted_layers(widths) if cfg.weighted and isinstance(source, Embedder) else []
    jobs = [(n, kind) for n in names for kind in cfg.probes]
    if combined:
        jobs.append((WEIGHTED, "linear"))

    def score(split: str, pred: np.ndarray) -> tuple[float, float]:
        labels = np.asarray(phones, dtype=object)
        bounds = tests[split].bounds
        hyps = [labels[pred[a:b]] for a, b in bounds]
        smooth = [labels[mode_filter(pred[a:b], cfg.per_smoothing)] for a, b in bounds]
        return (frame_accuracy(refs[split], hyps),
                phone_error_rate(refs[split], smooth, silence))

    tables: dict[str, list] = {k: [] for k in splits}
    layer_weights, scaled = None, {}
    last_job = {n: i for i, (n, _) in enumerate(jobs)}
    for i, (layer, kind) in enumerate(tqdm(jobs, desc="training probes", unit="probe",
                                           disable=not progress)):
        used = combined if layer == WEIGHTED else [layer]
        for n in used:
            if n not in scaled:  # standardised once; the raw features are let go
                scaled[n] = standardise(train.feats.pop(n),
                                        *[tests[k].feats.pop(n) for k in splits])
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(cfg.seed)
            if layer == WEIGHTED:
                model = WeightedSumProbe(len(used), widths[used[0]], len(phones))
            else:
                model = make_probe(kind, dims[layer], len(phones), cfg.mlp_hidden)
        model = train_probe(model, [scaled[n][0] for n in used], y_train, cfg, cfg.seed)
        for j, split in enumerate(splits, start=1):
            acc, per = score(split, predict(model, [scaled[n][j] for n in used],
                                            device=cfg.device))
            tables[split].append({"layer": layer, "probe": kind, "frame_accuracy": acc,
                                  "per": per, "n_train_frames": len(y_train),
                                  "n_test_frames": len(tests[split].labels)})
        if layer == WEIGHTED:
            w = torch.softmax(model.layer_weights.detach().cpu(), 0).tolist()
            layer_weights = dict(zip(used, w))
        for n in used:  # done with a layer: free its features (the sum needs its own)
            if last_job[n] == i and n not in combined:
                del scaled[n]
    return {k: PhoneProbeResult(name, tables[k], phones, layer_weights, len(train_rows),
                                len(test_rows[k])) for k in splits}
