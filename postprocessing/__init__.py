"""Post-processing: calibration, decision bands, business rules and reason codes, vectorised,
one implementation for /predict, /predict_batch and batch scoring."""
