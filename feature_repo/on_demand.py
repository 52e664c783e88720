"""Request-time features: the application itself plus ratios that need it.

The transformation runs in ``mode="python"`` (about 0.2 ms online, ten times cheaper than
pandas mode) and is used unchanged by training (historical) and serving (online). Inputs can
be missing (an applicant with no bureau snapshot in the TTL), so every ratio tolerates None.
Feast re-creates the function from its source text, so it must not use module-level names.
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
    import math

    def known(value):
        return value is not None and not (isinstance(value, float) and math.isnan(value))

    def ratio(num, den):
        if not known(num) or not known(den) or den == 0:
            return None
        return float(num) / float(den)

    def total(*values):
        return float(sum(values)) if all(known(v) for v in values) else None

    rows = zip(
        inputs["loan_amnt"],
        inputs["loan_int_rate"],
        inputs["person_income"],
        inputs["credit_card_due"],
        inputs["mortgage_due"],
        inputs["student_loan_due"],
        inputs["vehicle_loan_due"],
        inputs["total_wages"],
        inputs["tax_returns_filed"],
        strict=True,
    )
    names = ("loan_to_income", "interest_to_income", "total_debt", "debt_to_income")
    derived: dict = {name: [] for name in (*names, "wage_per_return")}
    for amount, rate, income, card, mortgage, student, vehicle, wages, returns in rows:
        debt = total(card, mortgage, student, vehicle, amount)
        interest = amount * rate / 100.0 if known(amount) and known(rate) else None
        derived["loan_to_income"].append(ratio(amount, income))
        derived["interest_to_income"].append(ratio(interest, income))
        derived["total_debt"].append(debt)
        derived["debt_to_income"].append(ratio(debt, income))
        derived["wage_per_return"].append(ratio(wages, returns))
    # Feast adds the inputs (the application fields) to this output itself.
    return derived
