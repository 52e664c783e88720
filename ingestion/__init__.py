"""Data sources and validation: the data contract, readers, ingestion into the offline store."""

import creditflow  # noqa: F401  (OpenMP settings before XGBoost loads)
