"""Template text generation: phrases of words, numbers, dates and clock times per language."""

from __future__ import annotations

import numpy as np

from paravox.data.synth.lexicon import Lexicon


def _pick(rng: np.random.Generator, words: tuple[str, ...]) -> str:
    return words[int(rng.integers(len(words)))]


def phrase(lex: Lexicon, rng: np.random.Generator) -> str:
    """One short phrase from a random template."""
    kind = int(rng.integers(6))
    det, adj, noun = _pick(rng, lex.function), _pick(rng, lex.adjectives), _pick(rng, lex.nouns)
    verb, noun2 = _pick(rng, lex.verbs), _pick(rng, lex.nouns)
    if kind == 0:
        return f"{det} {adj} {noun} {verb} {noun2}"
    if kind == 1:
        return f"{det} {noun} {verb} {int(rng.integers(2, 100))} {noun2}"
    if kind == 2:
        day, month = int(rng.integers(1, 29)), _pick(rng, lex.months)
        return f"{noun} {verb} {day} {month} {int(rng.integers(1950, 2030))}"
    if kind == 3:
        return f"{det} {noun} {lex.time_word} {int(rng.integers(1, 13))}:{rng.integers(0, 60):02d}"
    if kind == 4:
        return f"{adj} {noun} {lex.connective} {_pick(rng, lex.adjectives)} {noun2}"
    return f"{int(rng.integers(100, 10000))} {noun} {verb} {det} {noun2}"


def utterance_chunks(lex: Lexicon, rng: np.random.Generator, n_phrases: int, disfluent: bool
                     ) -> list[tuple[str, str]]:
    """A list of ``(kind, text)`` chunks: 'speech' or 'filler', each synthesised separately.

    Disfluent speakers get fillers between phrases and word repetitions inside phrases.
    """
    chunks: list[tuple[str, str]] = []
    for i in range(n_phrases):
        words = phrase(lex, rng).split()
        if disfluent and rng.random() < 0.5:
            k = int(rng.integers(len(words)))
            chunks.append(("speech", " ".join(words[:k + 1])))
            chunks.append(("speech", " ".join(words[k:])))  # word k said twice
        else:
            chunks.append(("speech", " ".join(words)))
        if disfluent and i < n_phrases - 1 and rng.random() < 0.6:
            chunks.append(("filler", _pick(rng, lex.fillers)))
    return chunks
