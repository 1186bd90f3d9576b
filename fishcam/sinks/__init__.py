"""Everything a run writes: annotated video, track log, detections log, counts, summary."""
