"""Random synthetic speakers: an espeak-ng voice per speaker, and per-utterance styles.

Speaker identity comes from the voice file: vocal-tract length (all formants scaled together,
plus a small per-formant jitter), pitch base and range, breathiness, flutter (jitter),
roughness, voicing strength, spectral tone and consonant strength. Labels are proxies:

* gender: a proxy drawn with the vocal-tract scale and pitch of adult male/female voices;
* age group (young/adult/senior): senior voices get more flutter, roughness and breath, a
  slower rate and a lowered female pitch; young voices a faster rate and higher pitch;
* fluency (fluent/disfluent), a proxy for pathological speech: disfluent speakers speak more
  slowly, pause more often and longer, use fillers and repeat words;
* style (neutral/high_arousal/low_arousal/whispered), an emotion proxy set per utterance
  from rate, pitch, pitch range, volume and voice quality.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

GENDERS = ("male", "female")
AGES = ("young", "adult", "senior")
FLUENCY = ("fluent", "disfluent")
STYLES = ("neutral", "high_arousal", "low_arousal", "whispered")


@dataclass
class Speaker:
    """One synthetic speaker: its labels (language, gender, age, fluency), its split and the
    espeak-ng voice parameters that make its identity (see the module docstring)."""

    id: str
    language: str
    gender: str
    age: str
    fluency: str
    split: str
    vtl: float  # formant frequency scale (percent)
    pitch_base: int
    pitch_range: int
    flutter: int
    roughness: int
    voicing: int
    breath: int
    tone: tuple[int, int, int]
    consonants: int
    rate: int  # words per minute at neutral style
    formants: list[tuple[int, int, int]]  # (freq %, height %, width %) for formants 0..8

    def traits(self) -> dict:
        """Labels and scalar voice parameters, for ``speakers.tsv`` (formants and tone, which
        are lists, left out)."""
        return {k: v for k, v in asdict(self).items() if k not in ("formants", "tone")}


def draw_speaker(rng: np.random.Generator, sid: str, language: str, gender: str, age: str,
                 fluency: str, split: str, spread: float = 1.0) -> Speaker:
    """Random voice parameters for a speaker with the given labels: vocal-tract scale and
    pitch drawn by gender, then shifted by age group and fluency, so the labels are audible.

    ``spread`` widens (> 1) or narrows (< 1) every random range about its centre (vocal-tract
    spread, pitch, voice quality, tone, formant shape, rate), so that a larger corpus covers
    more distinct voices; the label shifts (gender, age, fluency) are not scaled. Flutter,
    roughness and breath start at 0 and widen upwards only. Values are floored where espeak-ng
    needs positive ones, and roughness is capped at 7: espeak-ng has 8 roughness levels and
    switches roughness off above them. ``1.0`` reproduces the demo corpus bit for bit,
    including its quirk that the roughest senior voices (about 4 %, roughness >= 8) get none.
    """
    def u(lo: float, hi: float, floor: float = 0.0) -> float:
        if spread == 1.0:  # the exact draws of the demo corpus
            return float(rng.uniform(lo, hi))
        mid, half = (lo + hi) / 2, (hi - lo) / 2 * spread
        return max(floor, float(rng.uniform(mid - half, mid + half)))

    male = gender == "male"
    vtl = rng.normal(98.0 if male else 112.0, 4.0 * spread)
    pitch_base = u(70, 125, 40) if male else u(145, 215, 90)
    # voice-quality ranges start at 0, so they widen upwards only
    flutter, rough, breath = (float(rng.uniform(0, 20 * spread)),
                              float(rng.uniform(0, 3 * spread)),
                              float(rng.uniform(0, 12 * spread)))
    rate = u(150, 190, 100)
    if age == "young":
        vtl += 3.0
        pitch_base *= 1.12
        rate *= 1.08
    elif age == "senior":
        flutter += rng.uniform(15, 40)
        rough += rng.uniform(2, 6)
        breath += rng.uniform(5, 20)
        rate *= 0.9
        if not male:
            pitch_base *= 0.88
    if fluency == "disfluent":
        rate *= 0.85
    if spread != 1.0:  # espeak-ng speaks no slower than 80 wpm: keep low arousal (x0.72) above
        rate = max(rate, 112.0)
    formants = [(int(round(vtl * u(0.97, 1.03))), int(u(80, 115, 40)), int(u(80, 150, 40)))
                for _ in range(9)]
    return Speaker(
        id=sid, language=language, gender=gender, age=age, fluency=fluency, split=split,
        vtl=round(float(vtl), 2), pitch_base=int(pitch_base),
        pitch_range=int(pitch_base * u(0.35, 0.8, 0.1)), flutter=int(min(flutter, 100)),
        roughness=int(min(rough, 20 if spread == 1.0 else 7)), voicing=int(u(80, 110, 40)),
        breath=int(min(breath, 60)),
        tone=(int(u(70, 180, 20)), int(u(70, 160, 20)), int(u(60, 150, 20))),
        consonants=int(u(70, 130, 20)), rate=int(rate), formants=formants,
    )


def voice_text(lang_voice: str, spk: Speaker, whispered: bool = False) -> str:
    """The language's voice file followed by the speaker's variant keywords."""
    lines = [lang_voice.rstrip(), "", f"gender {spk.gender}",
             f"pitch {spk.pitch_base} {spk.pitch_base + spk.pitch_range}",
             f"flutter {spk.flutter}", f"roughness {spk.roughness}",
             f"consonants {spk.consonants} {spk.consonants}",
             f"tone 600 {spk.tone[0]} 1200 {spk.tone[1]} 2000 {spk.tone[2]}"]
    lines += [f"formant {i} {f} {h} {w}" for i, (f, h, w) in enumerate(spk.formants)]
    if whispered:
        lines += ["voicing 12", "breath 75 75 50 40 15 10", "breathw 150 150 200 200 400 400"]
    else:
        b = spk.breath
        lines += [f"voicing {spk.voicing}"]
        if b > 0:
            lines += [f"breath {b} {b} {b // 2} {b // 2} {b // 3} {b // 3}"]
    return "\n".join(lines) + "\n"


@dataclass
class StyleParams:
    """espeak-ng settings of one utterance's speaking style: a factor on the speaker's rate,
    pitch, pitch range and volume, and whether to whisper (a replaced voice quality)."""

    rate_scale: float
    pitch: int  # espeak-ng 0..100, 50 = the voice's own
    range_: int  # espeak-ng 0..100
    volume: int  # espeak-ng 0..200
    whispered: bool = False


def style_params(style: str, rng: np.random.Generator) -> StyleParams:
    """Random settings for one of ``STYLES``: high arousal is fast, high, wide and loud, low
    arousal slow, low, flat and quiet; each draw varies within the style's ranges."""
    j = lambda lo, hi: float(rng.uniform(lo, hi))  # noqa: E731
    if style == "neutral":
        return StyleParams(j(0.95, 1.05), int(j(45, 55)), int(j(40, 60)), int(j(90, 110)))
    if style == "high_arousal":
        return StyleParams(j(1.2, 1.35), int(j(68, 82)), int(j(80, 100)), int(j(140, 170)))
    if style == "low_arousal":
        return StyleParams(j(0.72, 0.85), int(j(25, 38)), int(j(5, 20)), int(j(55, 75)))
    if style == "whispered":
        return StyleParams(j(0.9, 1.0), 50, int(j(30, 50)), int(j(120, 150)), whispered=True)
    raise ValueError(f"unknown style '{style}'; choose from {STYLES}")
