"""Everything a run writes: annotated video, track log, detections log, counts, summary."""

# What `fishcam export` writes (sinks/exports.py); here so the CLI can list them without imports.
EXPORT_FORMATS = ("mot", "viame", "coco", "camtrap-dp")
