"""Exceptions that name the file, row or setting at fault and say what to do."""


class ParavoxError(Exception):
    """Base class: every user-facing failure in paravox derives from it."""


class ConfigError(ParavoxError):
    """A config key or value is wrong (the message names the key)."""


class AudioError(ParavoxError):
    """An audio file is missing, unreadable, empty or holds non-finite samples."""

    KINDS = ("missing", "corrupt", "truncated", "empty", "nan", "segment")

    def __init__(self, path, problem: str, hint: str = "", kind: str = "corrupt"):
        self.path = str(path)
        self.problem = problem
        self.kind = kind
        msg = f"{path}: {problem}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


class ManifestError(ParavoxError):
    """A manifest (or an importer's input) has a bad row; the message names file and line."""
