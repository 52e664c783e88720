"""Training: the labeled point-in-time dataset, tuning, fitting, calibration, evaluation, the
report and the champion / challenger promotion gate."""
