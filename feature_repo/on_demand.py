"""Request-time features: the application itself plus ratios that need it.

The transformation runs in ``mode="python"`` (ten times cheaper online than pandas mode) and is
used unchanged by training (historical), serving (online) and batch scoring. It is written over
numpy arrays, so that a million rows cost a fraction of a second and one row some microseconds.
Inputs can be missing (an applicant with no bureau snapshot in the TTL): missing is NaN inside,
None out, and a ratio over zero is missing too. Feast re-creates the function from its source
text, so it must not use module-level names.
"""

from feast import Field
from feast.on_demand_feature_view import on_demand_feature_view
from feast.types import Float64
from feature_views import credit_history, zipcode_features
from sources import application

from creditflow.feast_types import fields_of
from ingestion.contract import APPLICATION_COLUMNS

DERIVED = [
    Field(name="loan_to_income", dtype=Float64),  # loan amount / income
    Field(name="interest_to_income", dtype=Float64),  # yearly interest / income
    Field(name="total_debt", dtype=Float64),  # bureau dues plus the new loan
    Field(name="debt_to_income", dtype=Float64),  # total debt / income
    Field(name="wage_per_return", dtype=Float64),  # zipcode wages per tax return
]


@on_demand_feature_view(
    sources=[application, credit_history, zipcode_features],
    schema=fields_of(APPLICATION_COLUMNS, described=False) + DERIVED,
    mode="python",
)
def application_features(inputs: dict) -> dict:
    # Vectorised: one row online, a million in batch scoring (inputs are lists or arrays).
    import numpy as np

    def column(name):
        return np.asarray(inputs[name], dtype=np.float64)  # None -> NaN: missing

    def ratio(num, den):  # over zero: missing (divides only where den != 0: no warnings)
        return np.divide(num, den, out=np.full(num.shape, np.nan), where=den != 0)

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
    # Missing stays None (NaN in, None out). Feast adds the inputs to this output itself.
    return {name: np.where(np.isnan(v), None, v).tolist() for name, v in derived.items()}
