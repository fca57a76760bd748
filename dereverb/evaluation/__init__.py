"""Scoring systems against clean references: the metric registry, the systems (baselines,
oracles, checkpoints), the per-item score cache, and reports by T60 band with intervals."""
