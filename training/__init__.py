"""Training: dataset, tuning, model, calibration, evaluation, registry, promotion."""

import creditflow  # noqa: F401  (OpenMP settings before XGBoost loads)
