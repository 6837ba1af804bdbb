"""Exceptions that name the file, row or setting at fault and say what to do."""


class ParavoxError(Exception):
    """Base class: every user-facing failure in paravox derives from it."""


class ConfigError(ParavoxError):
    """A config key or value is wrong (the message names the key)."""


class AudioError(ParavoxError):
    """An audio file is missing, unreadable, empty or holds non-finite samples."""

    def __init__(self, path, problem: str, hint: str = ""):
        self.path = str(path)
        self.problem = problem
        msg = f"{path}: {problem}"
        if hint:
            msg += f" ({hint})"
        super().__init__(msg)


class ManifestError(ParavoxError):
    """A manifest (or an importer's input) has a bad row; the message names file and line."""
