"""Multi-object tracking through a maintained ByteTrack implementation (roboflow ``trackers``)."""
