"""Small fake corpora with the real layouts, file names and metadata formats of the standard
corpora, for the ``paravox prepare`` tests: tiny generated audio (0.25 s tones), WAV or, where
the corpus is distributed so, AAC/M4A and MP3."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

SR = 16000


def tone_wave(seed: int, seconds: float = 0.25, sr: int = SR) -> np.ndarray:
    """A short tone whose pitch depends on ``seed`` (files differ, tests stay fast)."""
    t = np.arange(int(seconds * sr)) / sr
    return (0.3 * np.sin(2 * np.pi * (150 + 17 * (seed % 40)) * t)).astype(np.float32)


def audio(path: Path, seed: int = 0, seconds: float = 0.25) -> Path:
    """Write a tone in the format the file name says (.wav, .flac, .mp3, or .m4a via PyAV)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    wave = tone_wave(seed, seconds)
    if path.suffix == ".m4a":
        from paravox.audio.compressed import write_aac  # needs PyAV (the "audio" extra)

        write_aac(path, wave, SR)
    elif path.suffix == ".mp3":
        sf.write(str(path), wave, SR, format="MP3", subtype="MPEG_LAYER_III")
    else:
        sf.write(str(path), wave, SR)
    return path


def text(path: Path, content: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content)
    return path


VOX1_META = ("VoxCeleb1 ID\tVGGFace1 ID\tGender\tNationality\tSet\n"
             "id10001\tA.J._Buckley\tm\tIreland\tdev\n"
             "id10002\tA.R._Rahman\tm\tIndia\tdev\n"
             "id10270\tAlice_X\tf\tUSA\ttest\n"
             "id10271\tBob_Y\tm\tUK\ttest\n")


def voxceleb1(root: Path) -> Path:
    """VoxCeleb1 as unpacked from vox1_dev_wav.zip and vox1_test_wav.zip, with the meta file
    and the cleaned trial lists (O: test only; E: dev and test; H: an unknown speaker)."""
    utts = {"dev/wav": ["id10001/1zcIwhmdeo4/00001", "id10001/1zcIwhmdeo4/00002",
                        "id10002/6WO410QOeuo/00001"],
            "test/wav": ["id10270/x6uYqmx31kE/00001", "id10270/8jEAjG6SegY/00008",
                         "id10271/1gtz-CUIygI/00001"]}
    for i, (part, ids) in enumerate((p, u) for p, us in utts.items() for u in us):
        audio(root / part / f"{ids}.wav", seed=i)
    text(root / "vox1_meta.csv", VOX1_META)
    text(root / "veri_test2.txt",
         "1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav\n"
         "0 id10270/x6uYqmx31kE/00001.wav id10271/1gtz-CUIygI/00001.wav\n")
    text(root / "list_test_all2.txt",
         "1 id10001/1zcIwhmdeo4/00001.wav id10001/1zcIwhmdeo4/00002.wav\n"
         "0 id10002/6WO410QOeuo/00001.wav id10270/8jEAjG6SegY/00008.wav\n")
    text(root / "list_test_hard2.txt",
         "1 id10270/x6uYqmx31kE/00001.wav id10270/8jEAjG6SegY/00008.wav\n"
         "0 id10999/zzzzzzzzzzz/00001.wav id10271/1gtz-CUIygI/00001.wav\n")
    return root


def voxceleb2(root: Path) -> Path:
    """VoxCeleb2 as unpacked from vox2_dev_aac.zip / vox2_test_aac.zip (AAC in .m4a), with
    vox2_meta.csv in its comma-and-spaces format."""
    ids = {"dev/aac": ["id00012/21Uxsk56VDQ/00001", "id00012/21Uxsk56VDQ/00002",
                       "id00015/0fijmz4vTVU/00001"],
           "test/aac": ["id00017/01dfn2spqyE/00001"]}
    for i, (part, uid) in enumerate((p, u) for p, us in ids.items() for u in us):
        audio(root / part / f"{uid}.m4a", seed=10 + i, seconds=0.5)
    text(root / "vox2_meta.csv", "VoxCeleb2 ID ,VGGFace2 ID ,Gender ,Set \n"
         "id00012 ,n000012 ,m ,dev \nid00015 ,n000015 ,f ,dev \nid00017 ,n000017 ,m ,test \n")
    return root
