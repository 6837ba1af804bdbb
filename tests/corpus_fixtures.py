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
    text(root / "iden_split.txt", "".join(f"{1 + i % 3} {u}.wav\n" for i, u in enumerate(
        u for us in utts.values() for u in us)))
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


CREMAD_DEMOGRAPHICS = "ActorID,Age,Sex,Race,Ethnicity\n" + "".join(
    f"{1000 + a},{20 + a},{'Male' if a % 2 else 'Female'},Caucasian,Not Hispanic\n"
    for a in range(1, 11))


def cremad(root: Path) -> Path:
    """CREMA-D: AudioWAV/ACTOR_SENTENCE_EMOTION_LEVEL.wav for 10 actors (and one clip also
    as MP3 in AudioMP3/), VideoDemographics.csv."""
    clips = [("DFA", "ANG", "XX"), ("IEO", "HAP", "HI"), ("TIE", "SAD", "LO")]
    for a in range(1, 11):
        for j, (sentence, emotion, level) in enumerate(clips):
            audio(root / "AudioWAV" / f"{1000 + a}_{sentence}_{emotion}_{level}.wav", a + j)
    audio(root / "AudioMP3" / "1001_DFA_ANG_XX.mp3", 1)
    text(root / "VideoDemographics.csv", CREMAD_DEMOGRAPHICS)
    return root


def ravdess(root: Path) -> Path:
    """RAVDESS: Actor_NN/03-CC-EE-II-SS-RR-NN.wav for 10 actors (speech), plus song clips of
    two actors, as the two zips unpack into one folder."""
    for actor in range(1, 11):
        for emotion, intensity in (("01", "01"), ("05", "02"), ("08", "01")):
            name = f"03-01-{emotion}-{intensity}-02-01-{actor:02d}.wav"
            audio(root / f"Actor_{actor:02d}" / name, actor)
    for actor in (1, 2):
        audio(root / f"Actor_{actor:02d}" / f"03-02-03-01-01-02-{actor:02d}.wav", 50 + actor)
    return root


IEMOCAP_HEADER = "% [START_TIME - END_TIME] TURN_NAME EMOTION [V, A, D]\n\n"


def iemocap(root: Path) -> Path:
    """IEMOCAP_full_release: five sessions, one improvised dialog each with four utterances
    (two per actor) and its EmoEvaluation file; plus a per-annotator file that is no summary."""
    codes = ["neu", "exc", "ang", "fru"]
    for s in range(1, 6):
        session = root / "IEMOCAP_full_release" / f"Session{s}"
        dialog = f"Ses{s:02d}F_impro01"
        lines = [IEMOCAP_HEADER]
        for k, (who, code) in enumerate(zip("FFMM", codes)):
            utt = f"{dialog}_{who}{k:03d}"
            audio(session / "sentences/wav" / dialog / f"{utt}.wav", s * 10 + k)
            lines.append(f"[{k * 2.5:.4f} - {k * 2.5 + 2:.4f}]\t{utt}\t{code}\t"
                         f"[2.5000, {2 + k * 0.5:.4f}, 3.0000]\n"
                         f"C-E1:\tNeutral;\t()\nA-E1:\tval 3; act 2; dom  3;\t()\n\n")
        text(session / "dialog/EmoEvaluation" / f"{dialog}.txt", "".join(lines))
        text(session / "dialog/EmoEvaluation/Categorical" / f"{dialog}_e1_cat.txt",
             f"{dialog}_F000 :Neutral state; ()\n")
    return root


SPEAKERS_TXT = """; Some speakers have also listened to some of the chapters.
;ID  |SEX| SUBSET           |MINUTES| NAME
19   | F | train-clean-100  | 25.19 | Kara Shallenberg
60   | M | train-clean-100  | 20.18 | |CBW|Simon
84   | F | dev-clean        |  8.02 | Christie Nowak
"""


def librispeech(root: Path) -> Path:
    """LibriSpeech/SUBSET/SPEAKER/CHAPTER/*.flac with *.trans.txt and SPEAKERS.TXT."""
    base = root / "LibriSpeech"
    for subset, spk, chapter in (("train-clean-100", "19", "198"),
                                 ("train-clean-100", "60", "121082"),
                                 ("dev-clean", "84", "121123")):
        folder = base / subset / spk / chapter
        lines = []
        for n in range(2):
            uid = f"{spk}-{chapter}-{n:04d}"
            audio(folder / f"{uid}.flac", int(spk) + n)
            lines.append(f"{uid} HELLO WORLD NUMBER {n}\n")
        text(folder / f"{spk}-{chapter}.trans.txt", "".join(lines))
    text(base / "SPEAKERS.TXT", SPEAKERS_TXT)
    return root


def musan(root: Path) -> Path:
    """musan/{music,noise,speech}/SUBSET/*.wav with the music ANNOTATIONS."""
    base = root / "musan"
    audio(base / "music/fma/music-fma-0000.wav", 1)
    audio(base / "music/fma/music-fma-0001.wav", 2)
    text(base / "music/fma/ANNOTATIONS", "music-fma-0000 rock,pop Y ArtistA\n"
         "music-fma-0001 classical N ArtistB\n")
    audio(base / "noise/free-sound/noise-free-sound-0000.wav", 3)
    audio(base / "noise/sound-bible/noise-sound-bible-0000.wav", 4)
    audio(base / "speech/librivox/speech-librivox-0000.wav", 5)
    return root


def rirs_noises(root: Path) -> Path:
    """RIRS_NOISES with simulated RIRs (two room types sharing file names), real RIRs and
    isotropic noises with their Kaldi lists, and point-source noises with theirs."""
    base = root / "RIRS_NOISES"
    for room_type in ("smallroom", "mediumroom"):
        audio(base / f"simulated_rirs/{room_type}/Room001/Room001-00001.wav", 1)
        audio(base / f"simulated_rirs/{room_type}/Room001/Room001-00002.wav", 2)
    real = base / "real_rirs_isotropic_noises"
    audio(real / "air_type1_air_binaural_aula_carolina_1_1_3_0_1.wav", 3)
    audio(real / "RVB2014_type1_rir_largeroom1_near_angla.wav", 4)
    audio(real / "RVB2014_type1_noise_largeroom1_1.wav", 5)
    text(real / "rir_list",
         "--rir-id air_type1_air_binaural_aula_carolina_1_1_3_0_1 --room-id "
         "air_type1_air_binaural_aula_carolina RIRS_NOISES/real_rirs_isotropic_noises/"
         "air_type1_air_binaural_aula_carolina_1_1_3_0_1.wav\n"
         "--rir-id RVB2014_type1_rir_largeroom1_near_angla --room-id RVB2014_type1_largeroom1 "
         "RIRS_NOISES/real_rirs_isotropic_noises/RVB2014_type1_rir_largeroom1_near_angla.wav\n")
    text(real / "noise_list",
         "--noise-id RVB2014_type1_noise_largeroom1_1 --noise-type isotropic --bg-fg-type "
         "background --room-linkage RVB2014_type1_largeroom1 RIRS_NOISES/"
         "real_rirs_isotropic_noises/RVB2014_type1_noise_largeroom1_1.wav\n")
    audio(base / "pointsource_noises/noise-free-sound-0001.wav", 6)
    text(base / "pointsource_noises/noise_list",
         "--noise-id noise-free-sound-0001 --noise-type point-source --bg-fg-type foreground "
         "RIRS_NOISES/pointsource_noises/noise-free-sound-0001.wav\n")
    return root
