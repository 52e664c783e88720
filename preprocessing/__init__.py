"""Preprocessing: feature values to the model's input (vectors in the stored order, category
codes from the booster), one implementation for training and scoring."""
