"""Accuracy from delayed outcomes per vintage, and its estimate before them (monitoring/accuracy).

Predictions and labels are inserted with SQL into a real database of each kind (SQLite and
PostgreSQL); the model the window judges is a stand-in holding only the metadata accuracy reads
(its test metrics), so no trained model is needed.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from types import SimpleNamespace

import numpy as np
import pytest
import sqlalchemy as sa
from sklearn.metrics import roc_auc_score

from creditflow.migrate import upgrade_engine
from creditflow.model.evaluate import expected_roc_auc
from creditflow.monitoring import thresholds as th
from creditflow.monitoring.accuracy import accuracy_results, scored_outcomes
from creditflow.monitoring.window import Window
from creditflow.tables import labels, predictions

TAG = "credit_model:accuracytest"
TEST_AUC = 0.80


def _window(settings, engine, as_of: datetime, test_auc: float = TEST_AUC,
            approved_gap: float | None = None) -> Window:  # fmt: skip
    window = Window(settings, engine, TAG, start=as_of - timedelta(days=7), as_of=as_of)
    found = {"test": {"roc_auc": test_auc}}
    if approved_gap is not None:
        found["test_approved"] = {"gap": approved_gap}
    window.model = SimpleNamespace(metadata={"metrics": found})
    return window


def _prediction(pid: str, at: datetime, p: float, decision: str = "approve") -> dict:
    return {
        "prediction_id": pid, "at": at, "model_tag": TAG, "entity_hash": "h" * 64,
        "features": {}, "default_probability": p, "decision": decision,
        "decided_by": f"band:{decision}", "rules_fired": [],
    }  # fmt: skip


def _label(pid: str, outcome: int, received_at: datetime, corrects: int | None = None) -> dict:
    return {
        "prediction_id": pid, "outcome": outcome, "outcome_at": received_at,
        "source": "test", "received_at": received_at, "corrects": corrects,
    }  # fmt: skip


def _insert(engine, table, rows) -> None:
    with engine.begin() as conn:
        conn.execute(table.insert(), rows)


@pytest.fixture()
def db(sql_engine):
    upgrade_engine(sql_engine)
    return sql_engine


def _by(results, section, metric, subject):
    (found,) = [
        r for r in results if (r.section, r.metric, r.subject) == (section, metric, subject)
    ]
    return found


def _calibrated(rng, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and outcomes drawn from them: a perfectly calibrated model."""
    p = rng.beta(1.2, 6.0, n)
    return p, (rng.random(n) < p).astype(int)


def test_realized_accuracy_per_vintage_with_coverage_by_decision(db, home):
    rng = np.random.default_rng(7)
    rows, outcomes, truth = [], [], {}
    for month, base in (("2025-01", datetime(2025, 1, 3, tzinfo=UTC)),
                        ("2025-02", datetime(2025, 2, 3, tzinfo=UTC))):  # fmt: skip
        p, y = _calibrated(rng, 400)
        decisions = np.where(p < 0.3, "approve", np.where(p < 0.5, "review", "decline"))
        labeled = decisions == "approve"
        for i in range(len(p)):
            pid = f"{month}-{i:04d}"
            rows.append(_prediction(pid, base + timedelta(hours=i), float(p[i]), decisions[i]))
            if labeled[i]:
                outcomes.append(_label(pid, int(y[i]), datetime(2026, 3, 1, tzinfo=UTC)))
        truth[month] = (p[labeled], y[labeled], decisions)
    _insert(db, predictions, rows)
    _insert(db, labels, outcomes)

    results = accuracy_results(_window(home, db, datetime(2026, 6, 1, tzinfo=UTC)))

    for month, (p, y, decisions) in truth.items():
        auc = _by(results, "accuracy", "roc_auc", month)
        assert auc.value == pytest.approx(roc_auc_score(y, p))
        assert auc.details["labeled"] == len(y) and auc.details["predictions"] == 400
        assert _by(results, "accuracy", "gini", month).value == pytest.approx(2 * auc.value - 1)
        assert _by(results, "accuracy", "brier", month).value == pytest.approx(
            np.mean((p - y) ** 2)
        )
        assert _by(results, "accuracy", "labeled_rows", month).value == len(y)
        rate = _by(results, "accuracy", "default_rate_approved", month)
        assert rate.value == pytest.approx(y.mean())
        approve = _by(results, "accuracy", "label_coverage_approve", month)
        assert approve.value == 1.0 and approve.details["labeled"] == len(y)
        decline = _by(results, "accuracy", "label_coverage_decline", month)
        assert decline.value == 0.0
        assert decline.details["predictions"] == int((decisions == "decline").sum())
        assert auc.details["mature"] is True  # the month end + 365 days is before as_of
    every_p = np.concatenate([truth[m][0] for m in truth])
    every_y = np.concatenate([truth[m][1] for m in truth])
    overall = _by(results, "accuracy", "roc_auc", "all")
    assert overall.value == pytest.approx(roc_auc_score(every_y, every_p))
    assert overall.details["vintages"] == ["2025-01", "2025-02"]
    # Judged against the AUC the scores promise on the labeled rows, not the test AUC.
    promised = expected_roc_auc(every_p)
    assert overall.threshold == pytest.approx(promised - th.AUC_DROP_ALERT)
    expected = th.status_of(promised - overall.value, th.AUC_DROP_WATCH, th.AUC_DROP_ALERT)
    assert overall.status == expected and overall.details["test_roc_auc"] == TEST_AUC


def test_status_judged_against_the_scores_promise_and_info_when_few_labels(db, home):
    rng = np.random.default_rng(3)
    p, y = _calibrated(rng, 2 * th.MIN_LABELED_FOR_ACCURACY)
    at = datetime(2025, 5, 1, tzinfo=UTC)
    _insert(db, predictions, [_prediction(f"p{i}", at, float(p[i])) for i in range(len(p))])
    few = th.MIN_LABELED_FOR_ACCURACY - 1
    _insert(db, labels, [_label(f"p{i}", int(y[i]), at + timedelta(days=30)) for i in range(few)])
    as_of = datetime(2025, 7, 1, tzinfo=UTC)
    realized = roc_auc_score(y[:few], p[:few])

    results = accuracy_results(_window(home, db, as_of, test_auc=realized + 0.2))
    assert _by(results, "accuracy", "roc_auc", "2025-05").status == th.INFO  # too few labels
    assert _by(results, "accuracy", "ece", "2025-05").status == th.INFO
    assert _by(results, "accuracy", "roc_auc", "2025-05").details["mature"] is False

    _insert(db, labels, [_label(f"p{i}", int(y[i]), at + timedelta(days=30))
                         for i in range(few, len(p))])  # fmt: skip
    # Outcomes drawn from the scores: the promise holds, whatever the test AUC was.
    steady = accuracy_results(_window(home, db, as_of, test_auc=0.99))
    auc = _by(steady, "accuracy", "roc_auc", "2025-05")
    drop = expected_roc_auc(p) - roc_auc_score(y, p)
    assert auc.details["drop"] == pytest.approx(drop)
    assert auc.status == th.status_of(drop, th.AUC_DROP_WATCH, th.AUC_DROP_ALERT) != th.ALERT
    # The world changed: outcomes no longer follow the scores (a concept drift).
    with db.begin() as conn:
        conn.execute(labels.delete())
    flipped = rng.permutation(y)
    _insert(db, labels, [_label(f"p{i}", int(flipped[i]), at + timedelta(days=30))
                         for i in range(len(p))])  # fmt: skip
    dropped = accuracy_results(_window(home, db, as_of))
    assert _by(dropped, "accuracy", "roc_auc", "2025-05").status == th.ALERT
    ece = _by(steady, "accuracy", "ece", "2025-05")
    assert ece.status == th.status_of(ece.value, th.ECE_WATCH, th.ECE_ALERT) != th.INFO
    assert ece.threshold == th.ECE_ALERT
    assert sum(b["rows"] for b in ece.details["reliability"]) == len(p)


def test_as_of_in_the_past_ignores_later_predictions_and_labels(db, home):
    early, late = datetime(2025, 3, 10, tzinfo=UTC), datetime(2025, 4, 10, tzinfo=UTC)
    _insert(db, predictions, [_prediction("early", early, 0.1), _prediction("late", late, 0.2)])
    _insert(db, labels, [_label("early", 1, datetime(2025, 3, 20, tzinfo=UTC)),
                         _label("late", 0, datetime(2025, 4, 20, tzinfo=UTC))])  # fmt: skip

    nothing = accuracy_results(_window(home, db, datetime(2025, 3, 1, tzinfo=UTC)))
    assert [(r.metric, r.subject, r.value, r.status) for r in nothing] == [
        ("labeled_rows", "all", 0.0, th.INFO)
    ]
    before = scored_outcomes(db, TAG, datetime(2025, 3, 15, tzinfo=UTC))
    assert before["prediction_id"].tolist() == ["early"]
    assert np.isnan(before["outcome"].iloc[0])  # its label arrived later
    between = scored_outcomes(db, TAG, datetime(2025, 4, 15, tzinfo=UTC))
    assert sorted(between["prediction_id"]) == ["early", "late"]
    known = between.set_index("prediction_id")["outcome"]
    assert known["early"] == 1.0 and np.isnan(known["late"])  # received after as_of
    results = accuracy_results(_window(home, db, datetime(2025, 3, 15, tzinfo=UTC)))
    assert {r.subject for r in results} == {"2025-03", "all"}
    assert _by(results, "accuracy", "labeled_rows", "all").value == 0
    assert _by(results, "accuracy", "label_coverage_approve", "all").details["predictions"] == 1


def test_a_correction_counts_instead_of_the_original(db, home):
    at = datetime(2025, 3, 10, tzinfo=UTC)
    _insert(db, predictions, [_prediction("p", at, 0.1), _prediction("q", at, 0.3)])
    first, second = datetime(2025, 5, 1, tzinfo=UTC), datetime(2025, 6, 1, tzinfo=UTC)
    _insert(db, labels, [_label("p", 0, first), _label("q", 1, first)])
    with db.connect() as conn:
        original = conn.execute(
            sa.select(labels.c.id).where(labels.c.prediction_id == "p")
        ).scalar()
    _insert(db, labels, [_label("p", 1, second, corrects=original)])

    def outcomes(as_of):
        frame = scored_outcomes(db, TAG, as_of)
        return frame.set_index("prediction_id")["outcome"].to_dict()

    assert outcomes(datetime(2025, 5, 15, tzinfo=UTC)) == {"p": 0.0, "q": 1.0}
    assert outcomes(datetime(2025, 6, 15, tzinfo=UTC)) == {"p": 1.0, "q": 1.0}
    results = accuracy_results(_window(home, db, datetime(2025, 6, 15, tzinfo=UTC)))
    assert _by(results, "accuracy", "default_rate_approved", "2025-03").value == 1.0
    assert _by(results, "accuracy", "labeled_rows", "2025-03").value == 2


def test_expected_auc_is_the_pair_sum_it_documents():
    rng = np.random.default_rng(11)
    p = np.round(rng.random(60), 1)  # many ties, as isotonic calibration makes
    p[:3] = [0.0, 1.0, 1.0]
    numerator = denominator = 0.0
    for j in range(len(p)):
        for i in range(len(p)):
            if i != j:
                weight = p[j] * (1 - p[i])
                denominator += weight
                numerator += weight * (1.0 if p[j] > p[i] else 0.5 if p[j] == p[i] else 0.0)
    assert expected_roc_auc(p) == pytest.approx(numerator / denominator, rel=1e-12)
    assert expected_roc_auc([0.3]) is None
    assert expected_roc_auc([1.0, 1.0, 1.0]) is None  # no pair can hold both classes
    assert expected_roc_auc([0.0, 1.0]) == 1.0


def test_estimate_is_close_to_the_realized_value_on_a_calibrated_model(db, home):
    rng = np.random.default_rng(0)
    p, y = _calibrated(rng, 6000)
    p = np.round(p, 2)  # many ties, as isotonic calibration makes
    y = (np.random.default_rng(1).random(len(p)) < p).astype(int)
    decisions = np.where(p < 0.4, "approve", "decline")
    at = datetime(2025, 8, 1, tzinfo=UTC)
    _insert(db, predictions, [_prediction(f"p{i}", at + timedelta(minutes=i), float(p[i]),
                                          decisions[i]) for i in range(len(p))])  # fmt: skip
    approved = np.flatnonzero(decisions == "approve")
    received = datetime(2026, 9, 1, tzinfo=UTC)

    before = accuracy_results(_window(home, db, datetime(2025, 9, 1, tzinfo=UTC)))
    auc = _by(before, "estimate", "roc_auc", "2025-08")
    rate = _by(before, "estimate", "default_rate", "2025-08")
    assert auc.status == rate.status == th.ESTIMATED
    assert auc.details["realized"] is None and auc.details["labeled"] == 0
    assert rate.value == pytest.approx(p[approved].mean())
    assert rate.details["approved"] == len(approved)

    _insert(db, labels, [_label(f"p{i}", int(y[i]), received) for i in approved])
    after = accuracy_results(_window(home, db, received))
    auc = _by(after, "estimate", "roc_auc", "2025-08")
    rate = _by(after, "estimate", "default_rate", "2025-08")
    realized = roc_auc_score(y[approved], p[approved])
    assert auc.details["realized"] == pytest.approx(realized)
    assert auc.value == pytest.approx(realized, abs=0.02)
    assert rate.details["realized"] == pytest.approx(y[approved].mean())
    assert rate.value == pytest.approx(rate.details["realized"], abs=0.01)
    assert auc.details["coverage"] == 1.0


def test_the_models_own_gap_on_approved_rows_is_allowed_for(db, home):
    """A model that ranks its approved rows worse than its scores promise (calibration is least
    exact in the low-risk band) did so on its test window already: the same shortfall live is
    no change of the world; only what goes beyond it counts."""
    rng = np.random.default_rng(11)
    p = rng.beta(1.2, 30.0, 3000)  # approved rows: low probabilities
    flat = np.clip(0.5 * p + 0.5 * p.mean(), 0, 1)  # the truth is flatter than the scores
    y = (rng.random(len(p)) < flat).astype(int)
    at = datetime(2025, 5, 1, tzinfo=UTC)
    _insert(db, predictions, [_prediction(f"g{i}", at, float(p[i])) for i in range(len(p))])
    _insert(db, labels, [_label(f"g{i}", int(y[i]), at + timedelta(days=30))
                         for i in range(len(p))])  # fmt: skip
    as_of = datetime(2025, 7, 1, tzinfo=UTC)
    shortfall = expected_roc_auc(p) - roc_auc_score(y, p)
    assert shortfall > th.AUC_DROP_ALERT
    unaware = _by(accuracy_results(_window(home, db, as_of)), "accuracy", "roc_auc", "all")
    assert unaware.status == th.ALERT
    aware = _by(accuracy_results(_window(home, db, as_of, approved_gap=shortfall - 0.01)),
                "accuracy", "roc_auc", "all")  # fmt: skip
    assert aware.details["drop"] == pytest.approx(0.01)
    assert aware.status == th.OK and aware.details["reference_gap"] == shortfall - 0.01


def test_outcomes_received_in_the_window_are_judged_on_their_own(db, home):
    """Old outcomes that kept the promise, and the window's new ones that break it: the window's
    subject sees only the new ones (a vintage, or all of them, would dilute them)."""
    rng = np.random.default_rng(5)
    as_of = datetime(2025, 7, 1, tzinfo=UTC)
    p_old, y_old = _calibrated(rng, 3000)
    p_new, y_new = _calibrated(rng, 400)
    y_new = rng.permutation(y_new)  # the world changed: outcomes no longer follow the scores
    old_at, new_at = datetime(2025, 1, 5, tzinfo=UTC), datetime(2025, 5, 5, tzinfo=UTC)
    _insert(db, predictions, [_prediction(f"o{i}", old_at, float(p)) for i, p in enumerate(p_old)]
            + [_prediction(f"n{i}", new_at, float(p)) for i, p in enumerate(p_new)])  # fmt: skip
    _insert(db, labels, [_label(f"o{i}", int(y), datetime(2025, 3, 1, tzinfo=UTC))
                         for i, y in enumerate(y_old)]
            + [_label(f"n{i}", int(y), as_of - timedelta(days=2))
               for i, y in enumerate(y_new)])  # fmt: skip
    results = accuracy_results(_window(home, db, as_of))
    received = _by(results, "accuracy", "roc_auc", "received_in_window")
    assert received.details["labeled"] == len(p_new)
    assert received.value == pytest.approx(roc_auc_score(y_new, p_new))
    assert received.status == th.ALERT
    assert _by(results, "accuracy", "roc_auc", "all").status != th.ALERT  # diluted
