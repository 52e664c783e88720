"""The exploration policy: a small share of review-band applications approved, to see outcomes.

Outcomes arrive only for approved loans, so a model retrained on them never learns how the
applicants it sent to review would have repaid (selection bias). Approving a small, random-like
share of them measures that. The choice is a pure function of the prediction id (a hash of it,
below ``share`` of ``BUCKETS``), never of a random generator: /predict, /predict_batch,
`creditflow score-batch` and the in-process Scorer give the same answer for the same id, and a
decision can be re-derived from the log.

Only applications that nothing but the model's band sent to review are eligible: no business
rule fired (a rule that declines or sends to review keeps its say). Off by default
(``CREDITFLOW_EXPLORATION_SHARE=0``).
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from creditflow.config import Settings, get_settings

# What decided an explored application (the answer's ``decided_by``); it is logged with
# ``explored`` set.
EXPLORATION = "exploration"
BUCKETS = 10_000  # the share's resolution: 0.0001


def exploration_share(settings: Settings | None = None) -> float:
    """The configured share, in [0, 1] (``CREDITFLOW_EXPLORATION_SHARE``)."""
    return (settings or get_settings()).exploration_share


def bucket(prediction_id: str) -> int:
    """The id's bucket in [0, BUCKETS): the first 8 bytes of its BLAKE2b digest."""
    digest = hashlib.blake2b(prediction_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def drawn(prediction_ids: Sequence[str], share: float) -> np.ndarray:
    """Which ids fall in the explored share (bool per id), whatever their decision."""
    cut = round(share * BUCKETS)
    if cut <= 0:
        return np.zeros(len(prediction_ids), dtype=bool)
    return np.fromiter((bucket(i) < cut for i in prediction_ids), dtype=bool,
                       count=len(prediction_ids))  # fmt: skip


def explore(
    decision: np.ndarray,
    decided_by: np.ndarray,
    fired: np.ndarray,
    prediction_ids: Sequence[str],
    share: float,
) -> np.ndarray:
    """Approves, in place, the drawn applications that only the band sent to review; returns
    which were (bool per application)."""
    if len(prediction_ids) != len(decision):
        raise ValueError(f"{len(prediction_ids)} prediction ids for {len(decision)} applications")
    explored = (decided_by == "band:review") & ~fired.any(axis=1)
    if explored.any():
        explored &= drawn(prediction_ids, share)
    decision[explored] = "approve"
    decided_by[explored] = EXPLORATION
    return explored
