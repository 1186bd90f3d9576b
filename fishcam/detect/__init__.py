"""Detectors: Ultralytics YOLO (weights), background-subtraction motion (no weights), scripted (tests)."""
