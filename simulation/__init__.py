"""The lifecycle in simulated time: `creditflow simulate` drives the whole loop (ingest, score,
log, outcomes, monitor, retrain) with a simulated clock, through the same code as the commands."""
