"""Where features come from: the offline parquet tables and the application at request time.

Schemas are not restated here: they are read from the data contract (ingestion/contract.py).
"""

from feast import FileSource, RequestSource
from feast.data_format import ParquetFormat

from creditflow.config import get_settings
from creditflow.feast_types import fields_of
from ingestion.contract import APPLICATION_COLUMNS

_settings = get_settings()

zipcode_source = FileSource(
    name="zipcodes",
    path=str(_settings.source_path("zipcodes")),
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
    created_timestamp_column="created_timestamp",
)

credit_history_source = FileSource(
    name="credit_history",
    path=str(_settings.source_path("credit_history")),
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
    created_timestamp_column="created_timestamp",
)

# The loan application as it arrives at /predict (and as the labeled loans table holds it).
application = RequestSource(name="application", schema=fields_of(APPLICATION_COLUMNS))
