"""Serving: the in-process scorer and the BentoML service."""

import creditflow  # noqa: F401  (OpenMP settings before XGBoost loads)
