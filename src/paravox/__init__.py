"""paravox: self-supervised utterance-level speech representations and their transfer."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("paravox")
except PackageNotFoundError:  # running from a source tree that was not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]
