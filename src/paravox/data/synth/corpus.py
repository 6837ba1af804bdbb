"""Generate a labelled multi-speaker speech corpus with no download: ``paravox synth``.

Layout of the output folder::

    wav/<speaker>/<utt>.wav       16 kHz mono PCM
    pretrain.jsonl                unlabelled pool (no speaker or labels in the rows)
    train.jsonl dev.jsonl test.jsonl   labelled downstream splits (speaker-disjoint)
    trials.txt                    speaker-verification trials over test speakers: "1|0 uttA uttB"
    phones.txt                    phone inventory (index 0 = sil) of the frame-level labels
    speakers.tsv                  every speaker's split and traits
    config.yaml, README.md        the resolved config; a corpus card saying which labels are proxies

Determinism: espeak-ng keeps wave-generator state across calls, so every speaker is made in a
fresh forked process from a parent that never touched the engine; all randomness is keyed by
``(seed, speaker, utterance)``. The same config gives bit-identical files for any ``workers``.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import yaml
from tqdm import tqdm

from paravox.audio.io import TARGET_SR, resample
from paravox.data.augment import add_noise, apply_rir, coloured_noise, random_eq, simulate_rir
from paravox.data.manifest import Alignment, ManifestRow, write_manifest
from paravox.data.synth.espeak import EspeakEngine, language_voice_file
from paravox.data.synth.lexicon import LEXICONS
from paravox.data.synth.textgen import utterance_chunks
from paravox.data.synth.voices import (
    AGES,
    FLUENCY,
    GENDERS,
    STYLES,
    Speaker,
    draw_speaker,
    style_params,
    voice_text,
)
from paravox.errors import ConfigError
from paravox.utils.atomic_files import (
    WriteError,
    atomic_open,
    atomic_path,
    describe_write_error,
    make_folder,
    write_text,
)
from paravox.utils.config import config_yaml, save_config

SPLITS = ("pretrain", "train", "dev", "test")
SIL = "sil"
HOP = TARGET_SR // 100  # 10 ms label frames
PAUSE_DB, PAUSE_FRAMES = -60.0, 5  # silent runs of >= 50 ms inside a phone segment are pauses


@dataclass
class SynthConfig:
    """Settings of ``paravox synth``: corpus size (``num_speakers``, ``utts_per_speaker``,
    ``phrases_per_utt``), ``languages``, the speaker-disjoint ``split_fractions``, the share
    of disfluent speakers, trials per test utterance, the random test channel
    (``test_channel``, ``test_snr_db``, ``test_reverb_prob``), how widely voices vary
    (``voice_spread``), worker processes and ``seed``.
    Checked by :func:`check_config`; ``workers`` never changes the output."""

    num_speakers: int = 200
    utts_per_speaker: int = 20
    phrases_per_utt: tuple[int, int] = (1, 3)
    languages: list[str] = field(default_factory=lambda: ["en", "es", "de", "fi", "tr", "sw"])
    # fraction of speakers per split, in SPLITS order; splits are speaker-disjoint
    split_fractions: tuple[float, float, float, float] = (0.5, 0.25, 0.1, 0.15)
    disfluent_fraction: float = 0.4
    trials_per_utt: int = 4  # target and non-target trials drawn per test utterance (each)
    test_channel: bool = True  # random EQ + noise + reverb on test audio
    test_snr_db: tuple[float, float] = (5.0, 25.0)
    test_reverb_prob: float = 0.5
    voice_spread: float = 1.0  # factor on every random voice-parameter range (see draw_speaker)
    workers: int = 2
    seed: int = 0


PRESETS: dict[str, dict] = {
    "tiny": {"num_speakers": 24, "utts_per_speaker": 8, "phrases_per_utt": (1, 2),
             "languages": ["en", "es", "fi"], "split_fractions": (0.34, 0.33, 0.0, 0.33),
             "trials_per_utt": 3},
    "demo": {"num_speakers": 200, "utts_per_speaker": 16, "phrases_per_utt": (1, 2)},
    # more speakers with fewer utterances each and wider voice ranges than demo: as many
    # distinct voices as the synthesiser gives for ~100 h
    "large": {"num_speakers": 2000, "utts_per_speaker": 24, "voice_spread": 1.6,
              "languages": ["en", "es", "de", "fi", "tr", "sw", "pl", "id"]},
}


def check_config(cfg: SynthConfig) -> None:
    """Raise ConfigError, naming the key, for a config that cannot produce a valid corpus
    (unknown language, fractions not summing to 1, too few speakers, ...): before any work."""
    bad = [lang for lang in cfg.languages if lang not in LEXICONS]
    if bad:
        raise ConfigError(f"languages: no lexicon for {bad}; available: {sorted(LEXICONS)}")
    if len(cfg.split_fractions) != 4 or abs(sum(cfg.split_fractions) - 1) > 1e-6:
        raise ConfigError(f"split_fractions must be 4 numbers (pretrain, train, dev, test) "
                          f"summing to 1, got {cfg.split_fractions}")
    if not cfg.languages:
        raise ConfigError("languages is empty; name at least one, e.g. languages=[en]")
    if any(f < 0 for f in cfg.split_fractions):
        raise ConfigError(f"split_fractions must not be negative, got {cfg.split_fractions}")
    if cfg.num_speakers < 4 or cfg.utts_per_speaker < 2:
        raise ConfigError("num_speakers must be >= 4 and utts_per_speaker >= 2")
    lo, hi = cfg.phrases_per_utt
    if not 1 <= lo <= hi:
        raise ConfigError(f"phrases_per_utt must be [min, max] with 1 <= min <= max, got "
                          f"{cfg.phrases_per_utt}")
    for key in ("disfluent_fraction", "test_reverb_prob"):
        if not 0 <= getattr(cfg, key) <= 1:
            raise ConfigError(f"{key} must lie in [0, 1], got {getattr(cfg, key)}")
    if not 0 < cfg.voice_spread <= 3:
        raise ConfigError(f"voice_spread must lie in (0, 3] (1 = the demo corpus's voice "
                          f"ranges), got {cfg.voice_spread}")
    if cfg.trials_per_utt < 1:
        raise ConfigError(f"trials_per_utt must be >= 1, got {cfg.trials_per_utt}")
    if cfg.test_snr_db[0] > cfg.test_snr_db[1]:
        raise ConfigError(f"test_snr_db must be [low, high], got {cfg.test_snr_db}")


def assign_splits(n: int, fractions, rng: np.random.Generator) -> list[str]:
    """Deal split names from a repeating pattern so every stratum spreads over the splits."""
    counts = np.floor(np.asarray(fractions) * n).astype(int)
    rest = n - counts.sum()
    order = np.argsort(-(np.asarray(fractions) * n - counts), kind="stable")
    counts[order[:rest]] += 1
    pattern: list[str] = []
    remaining = counts.astype(float).copy()
    for _ in range(n):  # largest-remaining-share first gives an interleaved deal
        k = int(np.argmax(remaining / np.maximum(counts, 1)))
        pattern.append(SPLITS[k])
        remaining[k] -= 1
    return pattern


def plan_speakers(cfg: SynthConfig) -> list[Speaker]:
    """Every speaker's traits and split, drawn from ``cfg.seed`` alone (no synthesis).

    Languages and genders are balanced and each (language, gender) stratum is spread over the
    splits, so that every split can be evaluated on every label; fluency and age are shuffled.
    """
    rng = np.random.default_rng([cfg.seed, 0])
    n = cfg.num_speakers
    # balanced, shuffled trait assignment; strata (language, gender) are dealt across splits
    langs = [cfg.languages[i % len(cfg.languages)] for i in range(n)]
    genders = [GENDERS[(i // len(cfg.languages)) % 2] for i in range(n)]
    n_dis = int(round(cfg.disfluent_fraction * n))
    fluency = list(rng.permutation([FLUENCY[1]] * n_dis + [FLUENCY[0]] * (n - n_dis)))
    ages = list(rng.permutation([AGES[i % len(AGES)] for i in range(n)]))
    pattern = assign_splits(n, cfg.split_fractions, rng)
    tiebreak = rng.permutation(n)
    order = sorted(range(n), key=lambda i: (langs[i], genders[i], tiebreak[i]))
    splits = [""] * n
    for j, i in enumerate(order):  # each (language, gender) stratum spreads over the splits
        splits[i] = pattern[j]
    speakers = []
    for i in range(n):
        srng = np.random.default_rng([cfg.seed, 1, i])
        speakers.append(draw_speaker(srng, f"spk{i:04d}", langs[i], genders[i], str(ages[i]),
                                     str(fluency[i]), splits[i], cfg.voice_spread))
    return speakers


# ------------------------------------------------------------------------------------------
# Worker side: one speaker per fresh process
# ------------------------------------------------------------------------------------------

def frame_levels_db(wave: np.ndarray) -> np.ndarray:
    """Level of each 10 ms label frame (window centred on sample 160 k) re the wave's RMS."""
    n_frames = wave.size // HOP + 1
    padded = np.pad(wave.astype(np.float64), (HOP // 2, HOP))
    frames = padded[:n_frames * HOP].reshape(n_frames, HOP)
    ref = np.sqrt(np.mean(wave.astype(np.float64) ** 2)) + 1e-12
    return 20 * np.log10(np.sqrt(np.mean(frames**2, axis=1)) / ref + 1e-12)


def _segments_to_alignment(segments: list[tuple[str, int, int]], clean: np.ndarray
                           ) -> Alignment:
    """Phone segments (16 kHz samples) -> run-length 10 ms frame labels covering every frame.

    espeak-ng emits no phoneme event for the short pauses it makes inside a clause, so runs of
    at least ``PAUSE_FRAMES`` frames below ``PAUSE_DB`` (on the clean audio) become ``sil``.
    """
    n_samples = clean.size
    n_frames = n_samples // HOP + 1
    starts = np.array([s for _, s, _ in segments])
    centres = np.minimum(np.arange(n_frames) * HOP, n_samples - 1)
    idx = np.searchsorted(starts, centres, side="right") - 1
    labels = [SIL if i < 0 or centres[k] >= segments[i][2] else segments[i][0]
              for k, i in enumerate(idx)]
    quiet = frame_levels_db(clean) < PAUSE_DB
    k = 0
    while k < n_frames:
        if quiet[k]:
            end = k
            while end < n_frames and quiet[end]:
                end += 1
            if end - k >= PAUSE_FRAMES:
                labels[k:end] = [SIL] * (end - k)
            k = end
        else:
            k += 1
    phones, counts = [labels[0]], [1]
    for lab in labels[1:]:
        if lab == phones[-1]:
            counts[-1] += 1
        else:
            phones.append(lab)
            counts.append(1)
    return Alignment(phones, counts)


def clean_phone(name: str) -> str:
    """An espeak-ng phoneme name without stress/syllable marks; pauses (``_...``) and empty
    names become ``sil``, so the alignment's phone inventory stays small."""
    name = name.strip().lstrip("',%=")
    return SIL if not name or name.startswith("_") else name


def _append_silence(pieces: list[np.ndarray], pos: int, seconds: float) -> int:
    pieces.append(np.zeros(int(seconds * TARGET_SR), np.float32))
    return pos + pieces[-1].size


def synth_speaker(job: tuple[SynthConfig, Speaker, str]) -> tuple[list[tuple[str, ManifestRow]],
                                                               float]:
    """Synthesise all utterances of one speaker (runs in a fresh worker process)."""
    cfg, spk, out_dir = job
    t0 = time.perf_counter()
    with EspeakEngine() as engine:
        lang_voice = language_voice_file(spk.language).read_text(encoding="utf-8")
        rows = _synth_utterances(engine, lang_voice, cfg, spk, out_dir)
    return rows, time.perf_counter() - t0


def _synth_utterances(engine, lang_voice: str, cfg: SynthConfig, spk: Speaker, out_dir: str
                      ) -> list[tuple[str, ManifestRow]]:
    lex = LEXICONS[spk.language]
    sid = int(spk.id[3:])
    disfluent = spk.fluency == "disfluent"
    out = []
    for u in range(cfg.utts_per_speaker):
        rng = np.random.default_rng([cfg.seed, 2, sid, u])
        style = STYLES[int(rng.integers(len(STYLES)))]
        sp = style_params(style, rng)
        voice = voice_text(lang_voice, spk, whispered=sp.whispered)
        n_phr = int(rng.integers(cfg.phrases_per_utt[0], cfg.phrases_per_utt[1] + 1))
        chunks = utterance_chunks(lex, rng, n_phr, disfluent)
        pieces: list[np.ndarray] = []
        segments: list[tuple[str, int, int]] = []
        pos = _append_silence(pieces, 0, rng.uniform(0.1, 0.3))
        texts = []
        for k, (kind, text) in enumerate(chunks):
            if k > 0:  # pauses between chunks: longer and more variable when disfluent
                pause = rng.uniform(0.3, 1.2) if disfluent else rng.uniform(0.08, 0.35)
                pos = _append_silence(pieces, pos, pause)
            syn = engine.synthesize(text, voice, rate=int(spk.rate * sp.rate_scale),
                                    pitch=sp.pitch, range_=sp.range_, volume=sp.volume,
                                    seed=int(rng.integers(2**31)))
            wave = resample(syn.wave, syn.sample_rate, TARGET_SR)
            scale = TARGET_SR / syn.sample_rate
            onsets = [(clean_phone(p), int(round(s * scale))) for p, s in syn.phones]
            ends = [s for _, s in onsets[1:]] + [wave.size]
            for (p, s), e in zip(onsets, ends):
                if e > s and p != SIL:
                    segments.append((p, pos + s, pos + min(e, wave.size)))
            pieces.append(wave)
            pos += wave.size
            texts.append(text if kind == "speech" else f"<{text}>")
        _append_silence(pieces, pos, rng.uniform(0.1, 0.3))
        wave = np.concatenate(pieces)
        alignment = _segments_to_alignment(segments, wave)
        labels = {"gender": spk.gender, "age": spk.age, "fluency": spk.fluency,
                  "style": style}
        if cfg.test_channel and spk.split == "test":
            wave, channel = apply_channel(wave, rng, cfg)
            labels["channel"] = channel
        wave = limit_peak(wave)
        uid = f"{spk.id}-u{u:03d}"
        rel = Path("wav", spk.id, f"{uid}.wav")
        write_wav(Path(out_dir) / rel, wave)
        row = ManifestRow(id=uid, path=str(rel), duration=round(wave.size / TARGET_SR, 4),
                          sample_rate=TARGET_SR, speaker=spk.id, language=spk.language,
                          labels=labels, text=" ".join(texts),
                          alignment=alignment)
        out.append((spk.split, row))
    return out


def limit_peak(wave: np.ndarray, peak: float = 0.99) -> np.ndarray:
    """``wave`` scaled down so that its peak is at most ``peak`` (no clipping in PCM-16)."""
    top = float(np.abs(wave).max(initial=0.0))
    return wave * (peak / top) if top > peak else wave


def apply_channel(wave: np.ndarray, rng: np.random.Generator, cfg: SynthConfig
                  ) -> tuple[np.ndarray, str]:
    """Random EQ, optional reverberation and coloured noise at a random SNR."""
    parts = ["eq"]
    wave = random_eq(wave, rng)
    if rng.random() < cfg.test_reverb_prob:
        rt60 = float(rng.uniform(0.2, 0.8))
        wave = apply_rir(wave, simulate_rir(rng, rt60, float(rng.uniform(0, 10))))
        parts.append(f"rir{rt60:.2f}s")
    kind = ("white", "pink", "brown")[int(rng.integers(3))]
    snr = float(rng.uniform(*cfg.test_snr_db))
    wave = add_noise(wave, coloured_noise(kind, wave.size, rng), snr, rng)
    parts.append(f"{kind}{snr:.0f}dB")
    return wave, "+".join(parts)


# ------------------------------------------------------------------------------------------
# Parent side
# ------------------------------------------------------------------------------------------

def _same_output(a_yaml: str, b_yaml: str) -> bool:
    """Configs that differ only in ``workers`` produce the same files; a key missing from a
    stored config (a corpus made before the key existed) means its default, whose output is
    the same as before the key was added."""
    defaults = yaml.safe_load(config_yaml(SynthConfig()))
    a, b = ({**defaults, **(yaml.safe_load(y) or {})} for y in (a_yaml, b_yaml))
    a.pop("workers", None)
    b.pop("workers", None)
    return a == b


def make_trials(rows: list[ManifestRow], per_utt: int, seed: int) -> list[tuple[int, str, str]]:
    """Target and non-target pairs over test utterances, each unordered pair at most once."""
    rng = np.random.default_rng([seed, 3])
    by_spk: dict[str, list[str]] = {}
    for r in rows:
        by_spk.setdefault(r.speaker, []).append(r.id)
    spk_of = {r.id: r.speaker for r in rows}
    ids = [r.id for r in rows]
    seen: set[tuple[str, str]] = set()
    trials = []
    for a in ids:
        same = [b for b in by_spk[spk_of[a]] if b != a]
        other = [b for b in ids if spk_of[b] != spk_of[a]]
        for pool, target in ((same, 1), (other, 0)):
            if not pool:
                continue
            for j in rng.choice(len(pool), size=min(per_utt, len(pool)), replace=False):
                b = pool[int(j)]
                key = (min(a, b), max(a, b))
                if key not in seen:
                    seen.add(key)
                    trials.append((target, a, b))
    return trials


def generate_corpus(cfg: SynthConfig, out_dir: str | Path, progress: bool = True,
                    overwrite: bool = False, reuse: bool = False) -> dict:
    """Write the corpus to ``out_dir`` and return a summary (hours, counts, seconds taken).

    ``reuse``: if ``out_dir`` already holds a complete corpus made with the same config, keep
    it and return its summary; ``overwrite``: replace a non-empty ``out_dir``.
    """
    check_config(cfg)
    out = Path(out_dir)
    if reuse and (out / "README.md").is_file() and (out / "summary.json").is_file():
        if _same_output(config_yaml(cfg), (out / "config.yaml").read_text()):
            return {**json.loads((out / "summary.json").read_text()), "reused": True}
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise ConfigError(f"output folder {out} is not empty; pass --overwrite or choose "
                              f"another folder")
        if not (out / "config.yaml").is_file() or not (out / "wav").is_dir():
            raise ConfigError(f"--overwrite refused: {out} does not look like a paravox corpus "
                              f"(no config.yaml and wav/); remove it yourself or pick a new folder")
        shutil.rmtree(out)
    make_folder(out, "corpus folder")
    t0 = time.perf_counter()
    speakers = plan_speakers(cfg)
    jobs = [(cfg, spk, str(out)) for spk in speakers]
    # fork is cheap and each child starts from the parent's espeak state, which must be
    # pristine: if this process has used an engine (or is not Linux), start clean with spawn
    pristine = EspeakEngine._instance_pid is None and sys.platform.startswith("linux")
    method = "fork" if pristine else "spawn"
    results = []
    with mp.get_context(method).Pool(max(1, cfg.workers), maxtasksperchild=1) as pool:
        it = pool.imap(synth_speaker, jobs)
        if progress:
            it = tqdm(it, total=len(jobs), desc="synth speakers", unit="spk")
        for res in it:
            results.append(res)
    split_rows: dict[str, list[ManifestRow]] = {s: [] for s in SPLITS}
    cpu_seconds = 0.0
    for rows, secs in results:
        cpu_seconds += secs
        for split, row in rows:
            split_rows[split].append(row)
    for r in split_rows["pretrain"]:  # the pretraining pool is unlabelled
        r.speaker, r.labels = None, {}
    for split, rows in split_rows.items():
        write_manifest(rows, out / f"{split}.jsonl")
    trials = make_trials(split_rows["test"], cfg.trials_per_utt, cfg.seed)
    write_text(out / "trials.txt", "".join(f"{t} {a} {b}\n" for t, a, b in trials))
    phones = sorted({p for rows in split_rows.values() for r in rows
                     for p in r.alignment.phones if p != SIL})
    write_text(out / "phones.txt", "\n".join([SIL, *phones]) + "\n")
    with atomic_open(out / "speakers.tsv", "w") as fh:
        cols = list(speakers[0].traits())
        fh.write("\t".join(cols) + "\n")
        for spk in speakers:
            fh.write("\t".join(str(v) for v in spk.traits().values()) + "\n")
    save_config(cfg, out / "config.yaml")
    hours = sum(r.duration for rows in split_rows.values() for r in rows) / 3600
    summary = {
        "hours": hours, "utterances": sum(len(v) for v in split_rows.values()),
        "speakers": len(speakers), "trials": len(trials),
        "target_trials": sum(t for t, _, _ in trials), "phones": len(phones) + 1,
        "split_utterances": {k: len(v) for k, v in split_rows.items()},
    }
    write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    write_card(out, cfg, summary)  # written last: its presence marks a complete corpus
    return {**summary, "wall_seconds": time.perf_counter() - t0, "worker_seconds": cpu_seconds}


def write_wav(path: Path, wave: np.ndarray) -> None:
    """Write ``wave`` as a 16 kHz PCM-16 WAV whole or not at all (making its folder): to a
    temporary file renamed into place when complete. libsndfile's own errors (a full disk
    during a write) are not ``OSError``s; they too become one-line :class:`WriteError`s."""
    existed = path.exists()
    try:
        with atomic_path(path) as tmp:
            sf.write(str(tmp), wave, TARGET_SR, subtype="PCM_16", format="WAV")
    except (RuntimeError, AssertionError) as exc:  # soundfile's errors; the temp file is gone
        raise WriteError(describe_write_error(path, OSError(str(exc).splitlines()[0] if str(exc)
                                                            else type(exc).__name__), existed)
                         ) from exc


def write_card(out: Path, cfg: SynthConfig, s: dict) -> None:
    """Write the corpus card ``README.md``: what each label really is (a proxy), sizes and
    seed. Written last by :func:`generate_corpus`: its presence marks a complete corpus."""
    text = f"""# paravox synthetic corpus

Generated by `paravox synth` with espeak-ng (formant synthesis). **This is synthetic speech.**
Its labels are *proxies* of the real-world attributes named after them:

| label | values | what it really is |
|---|---|---|
| speaker | spkNNNN | a randomly drawn espeak-ng voice (formants, pitch, voice quality; ranges x{cfg.voice_spread:g}) |
| gender | {', '.join(GENDERS)} | vocal-tract scale and pitch range drawn like adult male/female voices |
| age | {', '.join(AGES)} | proxy: jitter, roughness, breathiness, rate, pitch shifts |
| fluency | {', '.join(FLUENCY)} | pathological-speech proxy: pauses, fillers, repetitions, slow rate |
| style | {', '.join(STYLES)} | emotion proxy: rate, pitch, range, volume, voice quality per utterance |
| language | {', '.join(cfg.languages)} | espeak-ng's rules for each language; text is template word salad |
| alignment | phones.txt | espeak-ng phoneme events at 10 ms frames, `sil` for silence |

{s['speakers']} speakers, {s['utterances']} utterances, {s['hours']:.2f} h;
utterances per split: {s['split_utterances']}. Splits are speaker-disjoint; `pretrain.jsonl`
carries no speaker or labels. `trials.txt`: {s['trials']} trials ({s['target_trials']} target) over
test speakers, whose audio passed through a random channel (EQ, noise, reverberation).
Seed {cfg.seed}: the same config reproduces these files bit for bit.
"""
    write_text(out / "README.md", text)
