"""The model's feature contract: the one FeatureService training and serving both read.

Adding a feature to the model means adding it here (and to the view that computes it).
Variants tagged ``variant_of`` are alternatives that `creditflow train` scores beside the
contract in its report, so feature choices are judged by results.
"""

from feast import FeatureService

from creditflow.config import MODEL_FEATURE_SERVICE
from creditflow.contract import APPLICATION_COLUMNS
from creditflow.feature_repo.feature_views import credit_history, zipcode_features
from creditflow.feature_repo.on_demand import FROM_APPLICATION, application_features

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
            [*(c.name for c in APPLICATION_COLUMNS), *(f.name for f in FROM_APPLICATION)]
        ]
    ],
    tags={"variant_of": MODEL_FEATURE_SERVICE},
    description="Variant: application fields only.",
)
