"""Batch scoring (`creditflow score-batch`): a table of applications scored with point-in-time
features and the same preprocessing, model and post-processing as the service."""
