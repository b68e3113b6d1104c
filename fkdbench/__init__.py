"""fkdbench: benchmark facial keypoint detection models for accuracy, size and CPU speed."""

from importlib import metadata

try:
    __version__ = metadata.version("fkdbench")
except metadata.PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+unknown"
