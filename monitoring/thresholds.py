"""Every threshold and window of `creditflow monitor`, declared once.

A check's status comes from these numbers and nothing else: the report, the JSON summary, the
exit code and the service's gauges read the statuses the checks stored. Alerts are decided by
effect sizes (PSI, shares, differences), never by a p-value alone: with thousands of rows a
test finds a "significant" shift in anything.
"""

from __future__ import annotations

from datetime import timedelta

# Statuses, from best to worst; a run's status is its worst result's.
OK, WATCH, ALERT = "ok", "watch", "alert"
# A value reported for reading, not judged (counts, whylogs' p-values); an estimate (CBPE).
INFO, ESTIMATED = "info", "estimated"
SEVERITY = {INFO: 0, ESTIMATED: 0, OK: 0, WATCH: 1, ALERT: 2}

# Default window of a monitor run (`--window`), and the width of the profiles' time windows.
DEFAULT_WINDOW = timedelta(days=7)
PROFILE_WINDOW = timedelta(days=1)

# Input, score and decision drift: PSI (CSI for one feature) on the development sample's bins.
# The credit industry's convention: < 0.10 stable, 0.10-0.25 watch, > 0.25 act.
PSI_BINS = 10  # quantile bins of the reference, for numeric features and the score
# Scores are binned to this many decimals: an isotonic calibration gives step values that the
# service (float32 model path) and the reference (float64) reproduce only to about 1e-8, and a
# quantile edge on a step would move the whole step across it.
SCORE_DECIMALS = 6
PSI_WATCH = 0.10
PSI_ALERT = 0.25
# A share of 0 in a bin makes PSI infinite: each bin's share is floored at this.
PSI_EPSILON = 1e-4
# Fewer live rows than this in the window: drift is reported, never alerted (too noisy).
MIN_ROWS_FOR_DRIFT = 200

# A numeric feature whose live median is this many times the reference's (or as many times
# smaller) is broken data, not a new world: a unit changed upstream (incomes in thousands).
# Its drift is flagged ``data_quality`` and retraining refuses to learn from the window.
UNIT_CHANGE_RATIO = 20.0

# Data quality of live traffic, each a share of the window's requests.
MISSING_SHARE_WATCH = 0.05  # a feature the store did not have, above its training share
MISSING_SHARE_ALERT = 0.20
UNKNOWN_CATEGORY_ALERT = 0.01  # values outside the reference's categories
REJECTED_SHARE_WATCH = 0.01  # the API's contract rejections
REJECTED_SHARE_ALERT = 0.05

# Training-serving skew: served feature values that differ from the offline store's
# point-in-time value for the same request.
SKEW_SAMPLE = 500  # logged predictions rebuilt per run
SKEW_RELATIVE_TOLERANCE = 1e-6
SKEW_MISMATCH_WATCH = 0.001
SKEW_MISMATCH_ALERT = 0.01

# Latency and errors, by endpoint over the window.
P99_LATENCY_WATCH_S = 0.1
P99_LATENCY_ALERT_S = 0.5
ERROR_RATE_WATCH = 0.001
ERROR_RATE_ALERT = 0.01

# Accuracy once outcomes arrive, by application month (vintage); against the model's own test
# metrics from training.
MIN_LABELED_FOR_ACCURACY = 100  # fewer labeled rows in a vintage: reported, not judged
AUC_DROP_WATCH = 0.03
AUC_DROP_ALERT = 0.07
ECE_WATCH = 0.05
ECE_ALERT = 0.10


def status_of(value: float | None, watch: float, alert: float) -> str:
    """OK below ``watch``, WATCH from it, ALERT above ``alert`` (None: INFO)."""
    if value is None:
        return INFO
    if value > alert:
        return ALERT
    return WATCH if value >= watch else OK


def worst(statuses) -> str:
    """The most severe of some statuses (OK when there are none)."""
    return max(statuses, key=SEVERITY.__getitem__, default=OK)
