"""Monitoring: data profiles for drift."""

import creditflow  # noqa: F401  (OpenMP settings before XGBoost loads)
