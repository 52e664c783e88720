"""Evaluation metrics on cases whose answer can be checked by hand."""

import numpy as np
import pandas as pd
import pytest

from creditflow.model.evaluate import (
    AGE_BANDS,
    metrics,
    reliability,
    segment_metrics,
    segments_of,
)


def test_perfectly_separated_scores_rank_perfectly():
    labels = np.array([0, 0, 0, 1, 1])
    found = metrics(labels, np.array([0.1, 0.2, 0.3, 0.8, 0.9]))
    assert found["roc_auc"] == 1.0
    assert found["pr_auc"] == 1.0
    assert found["ks"] == 1.0
    assert found["default_rate"] == pytest.approx(0.4)
    assert found["rows"] == 5
    assert found["brier"] == pytest.approx(np.mean([0.01, 0.04, 0.09, 0.04, 0.01]))


def test_ks_is_the_largest_gap_between_the_class_score_cdfs():
    # Non-defaults score 0.1, 0.2, 0.6, 0.7; defaults 0.3, 0.4, 0.5, 0.8. At a cut after 0.2
    # half the non-defaults and none of the defaults are below: gap 0.5; nowhere larger.
    labels = np.array([0, 0, 1, 1, 1, 0, 0, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8])
    assert metrics(labels, scores)["ks"] == pytest.approx(0.5)


def test_calibrated_random_scores_have_a_small_ece():
    rng = np.random.default_rng(0)
    scores = rng.random(20_000)
    labels = (rng.random(20_000) < scores).astype(int)
    found = metrics(labels, scores)
    assert found["ece"] < 0.02
    assert 0.45 < found["roc_auc"] < 0.9


def test_a_constant_overconfident_score_has_ece_near_the_gap():
    labels = np.zeros(1000, dtype=int)
    labels[:100] = 1  # 10% base rate
    found = metrics(labels, np.full(1000, 0.9))
    assert found["ece"] == pytest.approx(0.8)
    assert found["roc_auc"] == pytest.approx(0.5)
    assert found["ks"] == pytest.approx(0.0)


def test_single_class_labels_give_none_for_ranking_metrics():
    found = metrics(np.zeros(50, dtype=int), np.linspace(0, 0.5, 50))
    assert found["roc_auc"] is None and found["pr_auc"] is None and found["ks"] is None
    assert found["default_rate"] == 0.0
    assert found["brier"] == pytest.approx(np.mean(np.linspace(0, 0.5, 50) ** 2))
    assert found["ece"] == pytest.approx(np.mean(np.linspace(0, 0.5, 50)))


def test_reliability_bins_skip_empty_ones_and_count_every_row():
    scores = np.array([0.05, 0.07, 0.55, 1.0, 0.95])
    labels = np.array([0, 1, 1, 1, 0])
    bins = reliability(labels, scores)
    assert [(b["lower"], b["upper"], b["rows"]) for b in bins] == [
        (0.0, 0.1, 2),
        (0.5, 0.6, 1),
        (0.9, 1.0, 2),
    ]
    assert bins[0]["mean_predicted"] == pytest.approx(0.06)
    assert bins[0]["observed_rate"] == pytest.approx(0.5)
    assert bins[2]["mean_predicted"] == pytest.approx(0.975)


def test_segments_band_ages_at_the_edges():
    assert [label for label, *_ in AGE_BANDS] == ["18-25", "26-35", "36-50", "51+"]
    frame = pd.DataFrame(
        {
            "person_age": [18, 25, 26, 50, 51, 80],
            "loan_intent": ["EDUCATION", "MEDICAL", "VENTURE", "PERSONAL", "MEDICAL", "EDUCATION"],
            "person_home_ownership": ["RENT", "OWN", "MORTGAGE", "RENT", "OTHER", "OWN"],
        },
        index=[10, 11, 12, 13, 14, 15],
    )
    segments = segments_of(frame)
    assert list(segments.columns) == ["loan_intent", "person_home_ownership", "age_band"]
    assert list(segments.index) == list(frame.index)
    assert list(segments["age_band"]) == ["18-25", "18-25", "26-35", "36-50", "51+", "51+"]
    assert segments["loan_intent"].tolist() == frame["loan_intent"].tolist()


def test_segment_metrics_report_every_slice_and_flag_small_ones():
    rng = np.random.default_rng(1)
    n = 1000
    scores = rng.random(n)
    labels = (rng.random(n) < scores).astype(int)
    # 700 rows of A, 290 of B, 10 of C holding one class only.
    group = np.array(["A"] * 700 + ["B"] * 290 + ["C"] * 10)
    labels[group == "C"] = 0
    segments = pd.DataFrame({"grade": group}, index=np.arange(n) + 5000)
    found = segment_metrics(labels, scores, segments, min_rows=300)
    assert set(found) == {"grade"}
    assert set(found["grade"]) == {"A", "B", "C"}
    assert found["grade"]["A"]["large"] is True
    assert found["grade"]["B"]["large"] is False
    assert found["grade"]["C"]["large"] is False
    assert found["grade"]["C"]["roc_auc"] is None
    assert found["grade"]["B"]["rows"] == 290
    mask = group == "A"
    assert found["grade"]["A"]["roc_auc"] == metrics(labels[mask], scores[mask])["roc_auc"]
