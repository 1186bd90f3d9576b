"""Drawing results on frames."""
