"""Importers from (and exporters to) other toolkits' manifests: Kaldi, CSV, NeMo, Lhotse,
SpeechBrain and Hugging Face audio folders. Every importer returns checked
:class:`~paravox.data.manifest.ManifestRow` s with absolute paths, and a bad input row raises
ManifestError naming ``file:line``, so one command turns an existing corpus description into
a paravox manifest.

One module per format, each describing its files: :mod:`.kaldi` (``wav.scp``, ``utt2spk``,
``segments``...; also the export), :mod:`.csv_table` (a header row, ``--map`` renaming; also
the export), :mod:`.nemo` (JSON lines), :mod:`.lhotse_manifests` (recordings + supervisions,
or cuts; no lhotse needed), :mod:`.speechbrain` (CSV or JSON, ``$data_root`` filled in) and
:mod:`.hf_audiofolder` (audio files with optional ``metadata.csv|jsonl``);
:mod:`.foreign_rows` holds what they share (the ``--map`` renaming, cells, paths, JSON lines).

Relative audio paths resolve as the source toolkit resolves them unless ``audio_root`` says
otherwise: Kaldi, Lhotse and SpeechBrain against the current folder, NeMo, CSV and audio
folders against the manifest's (or metadata file's) folder.
"""

from __future__ import annotations

import logging

from paravox.data.importers.csv_table import export_csv, import_csv, parse_delimiter
from paravox.data.importers.foreign_rows import (
    CSV_FIELDS,
    LANGUAGE_KEYS,
    SPEAKER_KEYS,
    parse_map,
)
from paravox.data.importers.hf_audiofolder import (
    AUDIO_EXTENSIONS,
    SPEAKER_COLUMNS,
    SPLITS,
    TEXT_COLUMNS,
    import_hf_audiofolder,
)
from paravox.data.importers.kaldi import export_kaldi, import_kaldi
from paravox.data.importers.lhotse_manifests import import_lhotse
from paravox.data.importers.nemo import NEMO_FIELDS, import_nemo
from paravox.data.importers.speechbrain import (
    SB_AUDIO,
    SB_PLACEHOLDER,
    SB_TEXT,
    import_speechbrain,
)

# the importers' parent logger: the format modules log to its children
log = logging.getLogger(__name__)

__all__ = [
    "AUDIO_EXTENSIONS",
    "CSV_FIELDS",
    "LANGUAGE_KEYS",
    "NEMO_FIELDS",
    "SB_AUDIO",
    "SB_PLACEHOLDER",
    "SB_TEXT",
    "SPEAKER_COLUMNS",
    "SPEAKER_KEYS",
    "SPLITS",
    "TEXT_COLUMNS",
    "export_csv",
    "export_kaldi",
    "import_csv",
    "import_hf_audiofolder",
    "import_kaldi",
    "import_lhotse",
    "import_nemo",
    "import_speechbrain",
    "parse_delimiter",
    "parse_map",
]
