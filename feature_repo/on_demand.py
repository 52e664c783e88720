"""Request-time features: the application itself plus ratios that need it.

The transformation runs in ``mode="python"`` (far cheaper online than pandas mode) and is used
unchanged by training (historical), serving (online) and batch scoring. Its formulas run over
numpy arrays, so that a million rows cost a fraction of a second, and over Python floats for
the one row of a request (figures: docs/benchmarks.md).
Inputs can be missing (an applicant with no bureau snapshot in the TTL): missing is NaN inside,
None out, and a ratio over zero is missing too. Feast re-creates the function from its source
text, so it must not use module-level names.
"""

from feast import Field
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64

from creditflow.contract import APPLICATION_COLUMNS
from creditflow.feast_types import fields_of
from creditflow.feature_repo.feature_views import credit_history, zipcode_features
from creditflow.feature_repo.sources import application

# Derived from the application alone.
FROM_APPLICATION = [
    Field(name="loan_to_income", dtype=Float64),  # loan amount / income
    Field(name="interest_to_income", dtype=Float64),  # yearly interest / income
]
# Derived with the stored facts about the applicant and the zipcode.
WITH_STORED_FACTS = [
    Field(name="total_debt", dtype=Float64),  # bureau dues plus the new loan
    Field(name="debt_to_income", dtype=Float64),  # total debt / income
    Field(name="wage_per_return", dtype=Float64),  # zipcode wages per tax return
]
DERIVED = FROM_APPLICATION + WITH_STORED_FACTS


@on_demand_feature_view(
    sources=[application, credit_history, zipcode_features],
    schema=fields_of(APPLICATION_COLUMNS, described=False) + DERIVED,
    mode="python",
)
def application_features(inputs: dict) -> dict:
    # Vectorised for a million rows in batch scoring; one row online (the request path) is
    # computed with Python floats, as numpy's per-call overhead would dominate there. The
    # formulas below are the same for both: IEEE doubles either way.
    import math

    import numpy as np

    one = len(inputs["loan_amnt"]) == 1

    def column(name):  # None -> NaN: missing
        if one:
            value = inputs[name][0]
            return math.nan if value is None else float(value)
        return np.asarray(inputs[name], dtype=np.float64)

    def ratio(num, den):  # over zero: missing (divides only where den != 0: no warnings)
        if one:
            return num / den if den != 0 else math.nan
        return np.divide(num, den, out=np.full(num.shape, np.nan), where=den != 0)

    def output(values):  # missing stays None (NaN in, None out)
        if one:
            return [None if math.isnan(values) else values]
        return np.where(np.isnan(values), None, values).tolist()

    amount, rate, income = column("loan_amnt"), column("loan_int_rate"), column("person_income")
    debt = (column("credit_card_due") + column("mortgage_due") + column("student_loan_due")
            + column("vehicle_loan_due") + amount)  # fmt: skip
    derived = {
        "loan_to_income": ratio(amount, income),
        "interest_to_income": ratio(amount * rate / 100.0, income),
        "total_debt": debt,
        "debt_to_income": ratio(debt, income),
        "wage_per_return": ratio(column("total_wages"), column("tax_returns_filed")),
    }
    # Feast adds the inputs to this output itself.
    return {name: output(v) for name, v in derived.items()}
