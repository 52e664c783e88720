"""Feature engineering: the Feast repo (entities, sources, feature views, the on-demand view,
FeatureServices). `feast apply` loads it through ``definitions.py``; the code reads it through
``creditflow.store``."""
