"""Feature-store access: the Feast store of the profile, the model's feature contract, a
FeatureService read online and point-in-time."""
