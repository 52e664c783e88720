"""Batch feature views: facts about an applicant and a zipcode, as of a point in time."""

from datetime import timedelta

from entities import applicant, zipcode
from feast import FeatureView
from sources import credit_history_push, zipcode_source

from creditflow.feast_types import fields_of
from ingestion.contract import CREDIT_HISTORY, ZIPCODES

zipcode_features = FeatureView(
    name="zipcode_features",
    entities=[zipcode],
    # Census-style facts change yearly; ten years keeps every zipcode servable.
    ttl=timedelta(days=3650),
    schema=fields_of(ZIPCODES.columns, exclude=("zipcode",)),
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
    schema=fields_of(CREDIT_HISTORY.columns, exclude=("dob_ssn",)),
    source=credit_history_push,
    online=True,
    description="Credit bureau snapshot of the applicant.",
)
