"""The model's feature contract: the one FeatureService training and serving both read.

Adding a feature to the model means adding it here (and to the view that computes it).
"""

from feast import FeatureService
from feature_views import credit_history, zipcode_features
from on_demand import application_features

from creditflow.config import MODEL_FEATURE_SERVICE

credit_model_v1 = FeatureService(
    name=MODEL_FEATURE_SERVICE,
    features=[
        application_features,
        credit_history,
        # city is left out: thousands of values, it lets the model memorise zipcodes.
        zipcode_features[
            ["state", "location_type", "tax_returns_filed", "population", "total_wages"]
        ],
    ],
    description="Features of the credit-risk model.",
)
