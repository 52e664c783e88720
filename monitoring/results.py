"""A monitoring result: one computed value with its threshold and status.

Every check returns these; `creditflow monitor` stores them as rows of ``monitoring_results``
and derives the report, the summary, the exit code and the service's gauges from those rows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class Result:
    section: str  # drift, score_drift, decision_drift, quality, skew, latency, accuracy, estimate
    metric: str  # psi, ks_pvalue, missing_share, mismatch_rate, p99_s, roc_auc, ...
    subject: str  # a feature, an endpoint, a vintage ("2026-11"), "all"
    value: float | None
    status: str  # monitoring.thresholds: ok, watch, alert, info, estimated
    threshold: float | None = None  # the alert threshold the value was judged against
    model_tag: str | None = None
    details: dict[str, Any] = field(default_factory=dict)  # JSON-serializable

    def row(self, run_id: int) -> dict[str, Any]:
        """The ``monitoring_results`` row."""
        return {"run_id": run_id, **asdict(self)}
