"""The study kit: the pieces every multi-stage experiment (the demo, ``paravox study ...``)
is made of, so that a new study is one pipeline module plus one report module.

- :class:`StageTimer`: wall time per stage, printed as the study goes;
- :func:`quiet_study`: Lightning's banners and loader notices held back while many runs train;
- :func:`prepare_corpus`: the study's corpus folder, generated when missing;
- :func:`train_and_export`: one recipe trained (or its finished run reused) and exported;
- :func:`random_like`: the random-init floor with a bundle's architecture;
- :func:`sv_row` and :func:`probe_rows`: cosine verification with its interval and linear
  probes, from :mod:`paravox.evaluation`; :func:`speaker_halves` and :func:`splits_of`;
- :func:`finish`: ``results.json``, the report and the closing line.

Registering a study for ``paravox study NAME`` is one call of
:func:`~paravox.pipelines.study_registry.register_study` (docs/adding-a-study.md).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tqdm import tqdm

from paravox.audio.io import load_audio
from paravox.data.manifest import Manifest
from paravox.data.synth import PRESETS as CORPUS_PRESETS
from paravox.data.synth import SynthConfig, generate_corpus
from paravox.evaluation.classify import probe_tasks
from paravox.evaluation.sv import cosine_sv
from paravox.evaluation.trials import read_trials
from paravox.inference.batching import WINDOW_ROWS
from paravox.inference.bundle import CONFIG_FILE, WEIGHTS_FILE, export_bundle, random_bundle
from paravox.training.engine import quiet_lightning
from paravox.training.recipes import load_recipe, run_recipe
from paravox.utils.atomic_files import write_text
from paravox.utils.config import build_config
from paravox.utils.wording import plural

DEFAULT_CORPUS = Path("data/demo")  # where `make demo` and the studies keep the demo corpus


class StageTimer:
    """Wall time per stage, printed as the study goes (``with timer("train DINO"): ...``)."""

    def __init__(self):
        self.stages: list[tuple[str, float]] = []
        self.start = time.perf_counter()

    @contextmanager
    def __call__(self, name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        print(f"\n== {name} (at {self._clock(t0 - self.start)})", flush=True)
        yield
        dt = time.perf_counter() - t0
        self.stages.append((name, dt))
        print(f"== {name}: done in {dt:.1f} s", flush=True)

    @staticmethod
    def _clock(seconds: float) -> str:
        return f"{int(seconds // 60)}:{int(seconds % 60):02d}"

    @property
    def total(self) -> float:
        """Seconds since the study started."""
        return time.perf_counter() - self.start

    def timing(self) -> dict[str, float]:
        """Seconds per stage plus ``total``: the ``timing_seconds`` of a results file."""
        return dict(self.stages + [("total", self.total)])


@contextmanager
def quiet_study() -> Iterator[None]:
    """Lightning's info lines and its loader / worker warnings held back while a study trains
    and fine-tunes many runs (paravox's own warnings and every error still show)."""
    with quiet_lightning(hide_warnings=True):
        yield


def slug(name: str) -> str:
    """A row name as a folder name."""
    return "".join(c if c.isalnum() else "_" for c in name.lower()).strip("_")


def prepare_corpus(corpus: str | Path | None, preset: str, corpus_preset: str, out: Path,
                   timer: StageTimer, progress: bool) -> Path:
    """A study's corpus folder (``corpus`` when given, else data/demo for the ``demo`` preset,
    else ``<out>/corpus``), generated with the synthetic ``corpus_preset`` when missing."""
    corpus = Path(corpus) if corpus else (DEFAULT_CORPUS if preset == "demo"
                                          else out / "corpus")
    with timer(f"corpus ({corpus_preset} preset) in {corpus}"):
        if (corpus / "summary.json").is_file():
            print(f"using the corpus in {corpus}", flush=True)
        else:
            generate_corpus(build_config(SynthConfig, base=CORPUS_PRESETS[corpus_preset]),
                            corpus, progress=progress, reuse=True)
    return corpus


def train_and_export(recipe: str, overrides: list[str], run_dir: Path, bundle: Path,
                     train_manifest: Path, reuse: bool, progress: bool,
                     callbacks: list | None = None, which: str | None = None
                     ) -> tuple[Path, int]:
    """Train ``recipe`` on ``train_manifest`` into ``run_dir`` and export it (``which``: one
    of the method's exports, default its evaluation encoder) to ``bundle``; returns (bundle,
    training steps).

    ``reuse``: the run's own re-run rules apply (a finished run with this config is skipped,
    an interrupted one resumes, one trained with other settings is refused, naming them); a
    bundle whose run folder is gone is taken as it is. Without ``reuse`` the run trains from
    scratch."""
    if reuse and not run_dir.exists() and (bundle / WEIGHTS_FILE).is_file():
        print(f"reusing {bundle} (its run folder {run_dir} is gone)", flush=True)
        source = json.loads((bundle / CONFIG_FILE).read_text()).get("source", {})
        return bundle, int(source.get("global_step", -1))
    rec = load_recipe(recipe, [f"train_manifest={train_manifest}", f"out_dir={run_dir}",
                               "eval_manifest=null", "trials=null",
                               f"run.progress_bar={str(progress).lower()}", *overrides])
    result = run_recipe(rec, callbacks=callbacks, mode="auto" if reuse else "restart")
    print(plural(result["steps"], "step"), flush=True)
    return export_bundle(run_dir, bundle, which=which), result["steps"]


def random_like(bundle: Path, out: Path, seed: int = 0) -> Path:
    """A randomly initialised encoder with ``bundle``'s architecture and features, as a bundle
    in ``out``: the floor every trained model must beat."""
    config = json.loads((bundle / CONFIG_FILE).read_text())
    return random_bundle(config["encoder"], config["encoder_settings"], config["features"],
                         out, seed=seed)


class FrozenFeatures:
    """One frozen encoder's utterance embeddings and time-averaged frames of one layer
    (default: the last), per manifest, from a single whole-utterance forward per utterance
    (in padded batches where the encoder pads exactly).
    A study scores each split several ways (verification, probes, speaker ID from the
    frames, held-out MI); they all read this one pass instead of embedding the split again.
    The embedding is the one :func:`~paravox.inference.embedder.embed_manifest` gives."""

    def __init__(self, embedder, layer: str | int = -1, progress: bool = False):
        self.embedder, self.layer, self.progress = embedder, layer, progress
        self._done: dict[tuple, tuple[dict, dict]] = {}

    def _pass(self, manifest: Manifest) -> tuple[dict, dict]:
        key = (str(manifest.source), tuple(r.id for r in manifest))
        if key not in self._done:
            e = self.embedder
            name = e.layer_names[self.layer] if isinstance(self.layer, int) else self.layer
            emb, pooled = {}, {}
            rows = list(manifest)
            with tqdm(total=len(rows), desc=f"embedding + pooled {name} frames", unit="utt",
                      disable=not self.progress) as bar:
                for first in range(0, len(rows), WINDOW_ROWS):
                    window = rows[first:first + WINDOW_ROWS]
                    waves = [load_audio(manifest.audio_path(r), r.offset, r.duration,
                                        target_sr=e.sample_rate) for r in window]
                    for r, found in zip(window, e.frames_many(waves, layers=name)):
                        emb[r.id], pooled[r.id] = found.embedding, found.layers[name].mean(0)
                    bar.update(len(window))
            self._done[key] = (emb, pooled)
        return self._done[key]

    def embeddings(self, manifest: Manifest) -> dict:
        """``{utterance id: embedding}``."""
        return self._pass(manifest)[0]

    def pooled(self, manifest: Manifest) -> dict:
        """``{utterance id: the layer's frames averaged over time}``."""
        return self._pass(manifest)[1]


def sv_row(embeddings: dict, trials: Path, n_boot: int) -> tuple[dict, tuple]:
    """Cosine verification of ``trials`` over ``embeddings``: the row (EER, its bootstrap
    interval, minDCF, trial count) and ``(scores, labels)`` for a DET plot."""
    result = cosine_sv(embeddings, read_trials(trials), n_boot)
    row = {k: v for k, v in result.row().items() if k != "backend"}
    return row, (result.scores, result.labels)


def probe_rows(train: Manifest, train_emb: dict, test: Manifest, test_emb: dict,
               tasks) -> dict[str, dict]:
    """A linear probe per task on frozen embeddings: ``{task: result row}``."""
    return probe_tasks(train, train_emb, test, test_emb, tasks, "linear")


def speaker_halves(manifest) -> tuple[list, list]:
    """Closed-set speaker identification split: each speaker's utterances (sorted by id)
    alternate between the probe's training half and its test half."""
    by: dict[str, list] = {}
    for r in sorted(manifest, key=lambda r: r.id):
        by.setdefault(r.speaker or "", []).append(r)
    fit, held = [], []
    for rows in by.values():
        fit += rows[0::2]
        held += rows[1::2]
    return fit, held


def splits_of(corpus: Path, names=("test", "dev")) -> dict[str, Manifest]:
    """The corpus's non-empty splits among ``names`` (the dev split is optional)."""
    found = {}
    for name in names:
        path = corpus / f"{name}.jsonl"
        if path.is_file() and len(m := Manifest.load(path)):
            found[name] = m
    return found


def finish(out: Path, payload: dict, write_report: Callable[[Path, dict], tuple[Path, Path]],
           timer: StageTimer) -> dict:
    """The common ending: ``results.json`` (with the stage times; written before the report,
    so a failing report loses no result, and again after it with the report's time), the
    report written by ``write_report(out, payload)`` and one closing line; returns
    ``payload`` with ``report_md`` / ``report_html`` added."""
    results = out / "results.json"
    payload["timing_seconds"] = timer.timing()
    write_text(results, json.dumps(payload, indent=2) + "\n")
    with timer("report"):
        md, html = write_report(out, payload)
    payload["timing_seconds"] = timer.timing()
    write_text(results, json.dumps(payload, indent=2) + "\n")
    print(f"\nreport: {md} and {html} ({timer.total / 60:.1f} min in all)", flush=True)
    payload["report_md"], payload["report_html"] = md, html
    return payload
