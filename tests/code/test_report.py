"""The evaluation report: strict JSON with the same numbers as metrics(), one HTML file."""

import json

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from creditflow.model.evaluate import metrics
from creditflow.training.report import ScoredModel, write_report


def _reject(constant: str):
    raise ValueError(f"not strict JSON: {constant}")


def test_write_report_gives_strict_json_and_a_self_contained_html(tmp_path):
    rng = np.random.default_rng(0)
    n = 3000
    risk = rng.normal(size=n)
    labels = (rng.random(n) < 1 / (1 + np.exp(-(risk - 1.5)))).astype(int)
    good = 1 / (1 + np.exp(-(risk - 1.5)))
    weak = 1 / (1 + np.exp(-(0.4 * risk + rng.normal(size=n) - 1.5)))
    segments = pd.DataFrame(
        {
            "loan_intent": rng.choice(["EDUCATION", "MEDICAL", "VENTURE"], n),
            "person_home_ownership": rng.choice(["RENT", "OWN", "OTHER"], n, p=[0.6, 0.38, 0.02]),
            "age_band": rng.choice(["18-25", "26-35", "51+"], n),
        }
    )
    models = [ScoredModel("candidate credit_risk:abc", good), ScoredModel("baseline: lr", weak)]
    extra = {
        "trials": [{"trial": 0, "auc": 0.71, "eta": 0.05}, {"trial": 1, "auc": float("nan")}],
        "thresholds": {"break_even": 0.2, "approve_rate": np.float32(0.8)},
        "windows": {"test": ["2026-01-01", "2026-06-30"]},
    }
    importance = {
        "gain": {f"feature_{i}": float(20 - i) for i in range(25)},
        "shap": {f"feature_{i}": 0.1 * i for i in range(25)},
    }
    figures_before = plt.get_fignums()

    summary = write_report(
        tmp_path / "out",
        title="credit_risk candidate",
        labels=labels,
        models=models,
        segments=segments,
        importance=importance,
        extra=extra,
    )

    assert plt.get_fignums() == figures_before
    on_disk = json.loads((tmp_path / "out" / "report.json").read_text(), parse_constant=_reject)
    assert on_disk == summary
    assert on_disk["title"] == "credit_risk candidate"
    for m in models:
        assert on_disk["models"][m.name] == metrics(labels, m.probabilities)
        assert set(on_disk["segments"][m.name]) == set(segments.columns)
        assert on_disk["reliability"][m.name]
    assert on_disk["segments"][models[0].name]["person_home_ownership"]["OTHER"]["large"] is False
    assert on_disk["importance"] == importance
    assert on_disk["details"]["trials"][1]["auc"] is None
    assert on_disk["details"]["thresholds"]["approve_rate"] == np.float32(0.8).item()

    page = (tmp_path / "out" / "report.html").read_text()
    assert page.count('<img src="data:image/png;base64,') >= 6
    assert "<script" not in page and "http://" not in page and "https://" not in page
    for m in models:
        assert m.name in page
    for column in segments.columns:
        assert column in page
    for value in ("EDUCATION", "MEDICAL", "VENTURE", "RENT", "OWN", "OTHER", "18-25", "51+"):
        assert value in page
    assert "break_even" in page
