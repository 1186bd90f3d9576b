"""Crops, the expert and fallback species models, the pure decision rule and the track ledger."""
