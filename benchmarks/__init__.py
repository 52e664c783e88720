"""Speed targets measured side by side (make bench)."""

import creditflow  # noqa: F401  (OpenMP settings before XGBoost loads)
