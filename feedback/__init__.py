"""Feedback: outcomes (labels) joined back to predictions and returned as labeled training data.
Filled by the monitoring-and-feedback issue."""
