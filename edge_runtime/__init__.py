"""fracture_edge.edge_runtime: the TensorFlow-free on-device runtime (numpy + pillow + LiteRT/ONNX Runtime).

Import stays cheap: only stdlib, numpy and PIL are imported here; interpreters are loaded lazily.
"""
from importlib import metadata as _metadata

try:
    __version__ = _metadata.version("fracture-edge")
except _metadata.PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0+source"
