"""Frame sources: video files, folders of images, in-memory arrays (tests)."""

from fishcam.sources.base import Source, SourceStatus, open_source

__all__ = ["Source", "SourceStatus", "open_source"]
