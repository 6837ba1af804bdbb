"""A ctypes binding to the espeak-ng formant synthesiser shipped by ``espeakng-loader``.

espeak-ng (GPL-3.0) is an optional dependency (``pip install paravox[synth]``). The library
keeps global state, including wave-generator state that survives ``espeak_Terminate``: the
same call sequence gives bit-identical audio only from a fresh process. The corpus generator
therefore synthesises each speaker in a freshly forked worker (see ``corpus.py``).
"""

from __future__ import annotations

import ctypes
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from paravox.errors import ParavoxError

AUDIO_OUTPUT_SYNCHRONOUS = 2
INIT_PHONEME_EVENTS = 0x0001
INIT_DONT_EXIT = 0x8000
POS_CHARACTER = 1
CHARS_UTF8 = 1
EV_LIST_TERMINATED, EV_WORD, EV_SENTENCE, EV_END, EV_MSG_TERMINATED, EV_PHONEME = 0, 1, 2, 5, 6, 7
PARAM_RATE, PARAM_VOLUME, PARAM_PITCH, PARAM_RANGE = 1, 2, 3, 4


class _EventId(ctypes.Union):
    _fields_ = [("number", ctypes.c_int), ("name", ctypes.c_char_p),
                ("string", ctypes.c_char * 8)]


class _Event(ctypes.Structure):
    _fields_ = [("type", ctypes.c_int), ("unique_identifier", ctypes.c_uint),
                ("text_position", ctypes.c_int), ("length", ctypes.c_int),
                ("audio_position", ctypes.c_int), ("sample", ctypes.c_int),
                ("user_data", ctypes.c_void_p), ("id", _EventId)]


_CALLBACK = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int,
                             ctypes.POINTER(_Event))


@dataclass
class Synthesis:
    """Audio at the engine rate and phone onsets ``(phone, sample)``; the last phone runs to
    the end of ``wave``."""

    wave: np.ndarray  # float32 in [-1, 1]
    sample_rate: int
    phones: list[tuple[str, int]]


def espeak_paths() -> tuple[str, str]:
    """``(shared library, data folder)`` of the espeak-ng that ``espeakng-loader`` ships; a
    ParavoxError saying what to install when that optional dependency is missing."""
    try:
        import espeakng_loader  # optional: espeakng_loader (pip install "paravox[synth]")
    except ImportError:
        raise ParavoxError(
            "the synthetic corpus needs espeak-ng: pip install 'paravox[synth]' "
            "(installs espeakng-loader, GPL-3.0)") from None
    return espeakng_loader.get_library_path(), espeakng_loader.get_data_path()


def language_voice_file(code: str) -> Path:
    """The espeak-ng voice file of a language code, e.g. 'en' -> lang/gmw/en."""
    _, data = espeak_paths()
    matches = sorted(Path(data, "lang").rglob(code))
    matches = [m for m in matches if m.is_file() and m.name == code]
    if not matches:
        raise ParavoxError(f"espeak-ng has no language '{code}' (see {data}/lang)")
    return matches[0]


class EspeakEngine:
    """One engine per process. ``synthesize(text, voice, rate, pitch, range_, volume)``."""

    _instance_pid: int | None = None

    def __init__(self):
        if EspeakEngine._instance_pid == os.getpid():
            raise ParavoxError("only one EspeakEngine per process (espeak-ng is global state)")
        lib_path, data_path = espeak_paths()
        self.lib = ctypes.CDLL(lib_path)
        self.libc = ctypes.CDLL(None)
        self.sample_rate = self.lib.espeak_Initialize(
            AUDIO_OUTPUT_SYNCHRONOUS, 0, data_path.encode(), INIT_PHONEME_EVENTS | INIT_DONT_EXIT)
        if self.sample_rate <= 0:
            raise ParavoxError(f"espeak-ng failed to initialise from {data_path}")
        self._chunks: list[np.ndarray] = []
        self._phones: list[tuple[str, int]] = []
        self._cb = _CALLBACK(self._on_audio)  # keep a reference: ctypes does not
        self.lib.espeak_SetSynthCallback(self._cb)
        self.lib.espeak_Synth.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint,
                                          ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
                                          ctypes.c_void_p, ctypes.c_void_p]
        self.lib.espeak_ng_SetRandSeed.argtypes = [ctypes.c_long]
        self._tmp = tempfile.TemporaryDirectory(prefix="paravox-voices-")
        self._voice_cache: dict[str, bytes] = {}
        EspeakEngine._instance_pid = os.getpid()

    def close(self) -> None:
        """Remove the voice files. (The engine holds a ctypes callback cycle, so do not rely
        on garbage collection; worker processes exit without running finalisers.)"""
        self._tmp.cleanup()

    def __enter__(self) -> EspeakEngine:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _on_audio(self, wav, n, events) -> int:
        if n > 0:
            self._chunks.append(np.ctypeslib.as_array(wav, shape=(n,)).copy())
        i = 0
        while events[i].type != EV_LIST_TERMINATED:
            ev = events[i]
            if ev.type == EV_PHONEME:
                name = ev.id.string.decode("utf-8", errors="replace")
                self._phones.append((name, int(ev.sample)))
            i += 1
        return 0

    def _voice_path(self, voice_text: str) -> bytes:
        if voice_text not in self._voice_cache:
            path = Path(self._tmp.name, f"v{len(self._voice_cache)}")
            path.write_text(voice_text, encoding="utf-8")
            self._voice_cache[voice_text] = str(path).encode()
        return self._voice_cache[voice_text]

    def synthesize(self, text: str, voice_text: str, rate: int = 175, pitch: int = 50,
                   range_: int = 50, volume: int = 100, seed: int = 0) -> Synthesis:
        """Speak ``text`` with the voice file ``voice_text`` at ``rate`` (words per minute),
        ``pitch`` and ``range_`` (0..100), ``volume`` (0..200), with phoneme events.

        ``seed`` seeds espeak-ng's and libc's random generators, so that the same call
        sequence in a fresh process gives the same audio.
        """
        if self.lib.espeak_SetVoiceByFile(self._voice_path(voice_text)) != 0:
            raise ParavoxError(f"espeak-ng rejected the voice file:\n{voice_text}")
        for param, value in ((PARAM_RATE, rate), (PARAM_PITCH, pitch), (PARAM_RANGE, range_),
                             (PARAM_VOLUME, volume)):
            self.lib.espeak_SetParameter(param, int(value), 0)
        self.lib.espeak_ng_SetRandSeed(ctypes.c_long(seed))
        self.libc.srand(ctypes.c_uint(seed & 0xFFFFFFFF))
        self._chunks, self._phones = [], []
        data = text.encode("utf-8")
        err = self.lib.espeak_Synth(data, len(data) + 1, 0, POS_CHARACTER, 0, CHARS_UTF8, None,
                                    None)
        self.lib.espeak_Synchronize()
        if err != 0:
            raise ParavoxError(f"espeak_Synth failed (code {err}) on text: {text!r}")
        wave = (np.concatenate(self._chunks).astype(np.float32) / 32768.0 if self._chunks
                else np.zeros(0, np.float32))
        return Synthesis(wave, self.sample_rate, list(self._phones))
