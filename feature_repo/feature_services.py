"""The model's feature contract: the one FeatureService training and serving both read.

Adding a feature to the model means adding it here (and to the view that computes it).
Variants tagged ``variant_of`` are alternatives that `creditflow train` scores beside the
contract in its report, so feature choices are judged by results.
"""

from feast import FeatureService
from feature_views import credit_history, zipcode_features
from on_demand import application_features

from creditflow.config import MODEL_FEATURE_SERVICE

ZIPCODE_FACTS = ["state", "location_type", "tax_returns_filed", "population", "total_wages"]

credit_model_v1 = FeatureService(
    name=MODEL_FEATURE_SERVICE,
    features=[
        application_features,
        credit_history,
        # city is left out: thousands of values, it lets the model memorise zipcodes.
        zipcode_features[ZIPCODE_FACTS],
    ],
    description="Features of the credit-risk model.",
)

# Variant: the same plus the high-cardinality city.
credit_model_v1_with_city = FeatureService(
    name=f"{MODEL_FEATURE_SERVICE}_with_city",
    features=[application_features, credit_history, zipcode_features[[*ZIPCODE_FACTS, "city"]]],
    tags={"variant_of": MODEL_FEATURE_SERVICE},
    description="Variant: adds the zipcode's city.",
)

# Variant: the application alone, no bureau or zipcode data (what the feature store adds).
credit_model_v1_application_only = FeatureService(
    name=f"{MODEL_FEATURE_SERVICE}_application_only",
    features=[
        application_features[
            [
                "person_age",
                "person_income",
                "person_home_ownership",
                "person_emp_length",
                "loan_intent",
                "loan_amnt",
                "loan_int_rate",
                "loan_to_income",
                "interest_to_income",
            ]
        ]
    ],  # fmt: skip
    tags={"variant_of": MODEL_FEATURE_SERVICE},
    description="Variant: application fields only.",
)
