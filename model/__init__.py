"""The model: the registry (BentoML's model store and our stage table) and the tree evaluators
(XGBoost's C prediction calls and per-leaf tables for a few rows)."""
