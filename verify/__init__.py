"""Artifacts + data -> measurements: runners, comparisons, task metrics, gates, reports."""
