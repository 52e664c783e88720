"""Batch feature views: facts about an applicant and a zipcode, as of a point in time."""

from datetime import timedelta

from feast import FeatureView

from creditflow.contract import CREDIT_HISTORY, ZIPCODES
from creditflow.feast_types import fields_of
from creditflow.feature_repo.entities import applicant, zipcode
from creditflow.feature_repo.sources import credit_history_push, zipcode_source

zipcode_features = FeatureView(
    name="zipcode_features",
    entities=[zipcode],
    # Census-style facts change yearly; ten years keeps every zipcode servable.
    ttl=timedelta(days=3650),
    schema=fields_of(ZIPCODES.columns, exclude=ZIPCODES.key),
    source=zipcode_source,
    online=True,
    description="Census-style facts about the applicant's zipcode.",
)

credit_history = FeatureView(
    name="credit_history",
    entities=[applicant],
    # A bureau snapshot older than this is stale: the offline join and the online store
    # both treat it as missing.
    ttl=timedelta(days=180),
    schema=fields_of(CREDIT_HISTORY.columns, exclude=CREDIT_HISTORY.key),
    source=credit_history_push,
    online=True,
    description="Credit bureau snapshot of the applicant.",
)
