import subprocess
import sys
from dataclasses import dataclass, field

import pytest

from paravox.cli.main import main
from paravox.errors import ConfigError
from paravox.utils.config import build_config


@dataclass
class Toy:
    n: int = 3
    name: str = "a"
    sizes: list[int] = field(default_factory=lambda: [1, 2])


def test_config_layers_and_type_checks(tmp_path):
    (tmp_path / "r.yaml").write_text("n: 5\nname: from_yaml\n")
    cfg = build_config(Toy, base={"n": 4}, yaml_path=tmp_path / "r.yaml",
                       overrides=["name=cli", "sizes=[7,8]"])
    assert (cfg.n, cfg.name, cfg.sizes) == (5, "cli", [7, 8])
    with pytest.raises(ConfigError, match="nn.*Valid top-level keys of Toy: n, name, sizes"):
        build_config(Toy, overrides=["nn=1"])
    with pytest.raises(ConfigError, match="command-line overrides, key 'n'.*'many'"):
        build_config(Toy, overrides=["n=many"])
    (tmp_path / "bad.yaml").write_text("nmae: x\n")
    with pytest.raises(ConfigError, match="bad.yaml, key 'nmae'"):
        build_config(Toy, yaml_path=tmp_path / "bad.yaml", overrides=["n=1"])
    with pytest.raises(ConfigError, match="not of the form key=value"):
        build_config(Toy, overrides=["n"])
    with pytest.raises(ConfigError, match="config file not found"):
        build_config(Toy, yaml_path=tmp_path / "none.yaml")


def test_help_lists_commands():
    out = subprocess.run([sys.executable, "-m", "paravox.cli.main", "--help"],
                         capture_output=True, text=True, check=True).stdout
    for cmd in ("synth", "manifest", "preview", "version", "encoders"):
        assert cmd in out


def test_cli_synth_stats_import_export_preview(tmp_path, capsys):
    out = tmp_path / "c"
    assert main(["synth", "-o", str(out), "-q", "num_speakers=8", "utts_per_speaker=2"]) == 0
    assert "8 speakers, 16 utterances" in capsys.readouterr().out
    assert main(["manifest", "stats", str(out / "train.jsonl")]) == 0
    assert "style:" in capsys.readouterr().out
    assert main(["manifest", "export", "kaldi", str(out / "train.jsonl"), "-o",
                 str(tmp_path / "kd")]) == 0
    assert main(["manifest", "import", "kaldi", str(tmp_path / "kd"), "-o",
                 str(tmp_path / "back.jsonl")]) == 0
    assert main(["manifest", "validate", str(tmp_path / "back.jsonl"), "-q"]) == 0
    assert main(["preview", str(out / "train.jsonl"), "-o", str(tmp_path / "p.png")]) == 0
    assert (tmp_path / "p.png").stat().st_size > 10_000


def test_cli_reports_errors_without_traceback(tmp_path, capsys):
    assert main(["synth", "-o", str(tmp_path / "x"), "num_speakrs=3"]) == 2
    assert "num_speakrs" in capsys.readouterr().err
    assert main(["manifest", "stats", str(tmp_path / "none.jsonl")]) == 2
    assert "manifest not found" in capsys.readouterr().err


def test_encoders_command_reports_parameter_counts(capsys):
    assert main(["encoders"]) == 0
    out = capsys.readouterr().out
    assert "ecapa" in out and "6,194,432" in out and "resnet34" in out
    assert main(["encoders", "ecapa", "channels=1024"]) == 0
    assert "14,660,800" in capsys.readouterr().out


def test_paravox_warnings_show_as_one_line(capsys):
    """The CLI shows paravox's own warnings as one line naming the setting, not Python's
    file:line header + source line; other packages' warnings keep their format."""
    import os
    import warnings

    from paravox.cli.main import one_line_warnings

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        one_line_warnings()
        one_line_warnings()  # installed once: a second call does not wrap it again
        assert not getattr(warnings.showwarning.__closure__[0].cell_contents,
                           "paravox_one_line", False)
        ours = os.sep.join(["", "site", "paravox", "methods", "dino.py"])
        warnings.warn_explicit("dino.momentum_start=0.996 over 200 steps leaves ...",
                               UserWarning, ours, 153)
        warnings.warn_explicit("something else", UserWarning, "/site/other/mod.py", 7)
    err = capsys.readouterr().err.splitlines()
    assert err[0] == "paravox: warning: dino.momentum_start=0.996 over 200 steps leaves ..."
    # another package's warning goes to Python's own display (here pytest's recorder)
    assert not any("something else" in line for line in err)
