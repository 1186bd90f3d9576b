"""fishcam: which fish are in underwater video, tracked and counted per species."""

__version__ = "0.1.0"
