"""score-batch's output: every input row, in order, answers aligned to the valid ones."""

import numpy as np
import pandas as pd
import pytest

from creditflow.batch.score import _output_table
from creditflow.postprocessing.predict import REASON_CODES, Answers
from creditflow.postprocessing.rules import RULE_IDS

NAMES = ("income", "debts")


def _answers(probabilities: list[float]) -> Answers:
    n = len(probabilities)
    fired = np.zeros((n, len(RULE_IDS)), dtype=bool)
    fired[0, 1] = True
    reason_index = np.full((n, REASON_CODES), -1)
    reason_index[0, 0] = 1
    contributions = np.where(reason_index >= 0, 0.5, np.nan)
    return Answers(np.array(probabilities), np.array(["review"] * n, dtype=object),
                   np.array([RULE_IDS[1]] + ["band:review"] * (n - 1), dtype=object), fired,
                   np.zeros((n, len(NAMES)), dtype=bool), reason_index, contributions)  # fmt: skip


@pytest.mark.parametrize("valid", [[True, False, True], [True, True]])
def test_answers_line_up_with_the_valid_input_rows(valid):
    valid = np.array(valid)
    raw = pd.DataFrame({"dob_ssn": [f"row{i}" for i in range(len(valid))]})
    errors = pd.Series(["" if ok else "person_age >= 18" for ok in valid])
    answers = _answers([0.1 * (k + 1) for k in range(int(valid.sum()))])
    out = _output_table(raw, errors, valid, answers, NAMES, "model:1").to_pandas()
    assert out["dob_ssn"].tolist() == raw["dob_ssn"].tolist()
    scored = out[valid]
    assert scored["default_probability"].tolist() == pytest.approx(answers.probability.tolist())
    assert scored["error"].isna().all()
    assert list(scored["rules_fired"].iloc[0]) == [RULE_IDS[1]]
    assert scored["reason_1"].iloc[0] == "debts" and scored["reason_1"].iloc[1:].isna().all()
    assert (scored["model_tag"] == "model:1").all()
    if not valid.all():
        rejected = out[~valid].iloc[0]
        assert rejected["error"] == "person_age >= 18"
        assert pd.isna(rejected["default_probability"]) and rejected["decision"] is None
