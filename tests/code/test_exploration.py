"""The exploration policy: deterministic from the prediction id, review band only, rules win."""

import numpy as np
import pytest

from creditflow.postprocessing.exploration import (
    BUCKETS,
    EXPLORATION,
    bucket,
    drawn,
    exploration_share,
    explore,
)
from creditflow.postprocessing.rules import RULE_IDS

IDS = [f"{i:032x}" for i in range(20_000)]


def test_the_share_drawn_is_the_setting_and_the_same_ids_every_time():
    first = drawn(IDS, 0.05)
    assert first.mean() == pytest.approx(0.05, abs=0.006)
    assert (drawn(list(IDS), 0.05) == first).all()  # a pure function of the id
    assert not drawn(IDS, 0.0).any() and drawn(IDS, 1.0).all()
    assert all(0 <= bucket(i) < BUCKETS for i in IDS[:100])


def _answers(n: int):
    decision = np.array(["review"] * n, dtype=object)
    decided_by = np.array(["band:review"] * n, dtype=object)
    return decision, decided_by, np.zeros((n, len(RULE_IDS)), dtype=bool)


def test_only_what_the_band_alone_sent_to_review_is_approved():
    n = 4
    ids = [i for i in IDS if drawn([i], 0.5)[0]][:n]  # all drawn
    decision, decided_by, fired = _answers(n)
    decision[1], decided_by[1] = "decline", RULE_IDS[0]  # a rule declined it
    fired[1, 0] = True
    fired[2, 1] = True  # a rule fired on a review-band application: it keeps its say
    decision[3], decided_by[3] = "approve", "band:approve"
    explored = explore(decision, decided_by, fired, ids, 0.5)
    assert explored.tolist() == [True, False, False, False]
    assert decision.tolist() == ["approve", "decline", "review", "approve"]
    assert decided_by[0] == EXPLORATION and decided_by[3] == "band:approve"


def test_off_by_default_and_bad_values_named(monkeypatch):
    monkeypatch.delenv("CREDITFLOW_EXPLORATION_SHARE", raising=False)
    assert exploration_share() == 0.0
    decision, decided_by, fired = _answers(len(IDS))
    assert not explore(decision, decided_by, fired, IDS, exploration_share()).any()
    for bad in ("1.5", "-0.1", "nan", "five"):
        monkeypatch.setenv("CREDITFLOW_EXPLORATION_SHARE", bad)
        with pytest.raises(ValueError, match="exploration_share"):  # pydantic's, naming it
            exploration_share()
