"""Feedback: labels joined back to predictions (next issue)."""

import creditflow  # noqa: F401  (OpenMP settings before XGBoost loads)
