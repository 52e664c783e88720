"""Where features come from: the offline parquet tables and the application at request time.

Schemas are not restated here: they are read from the data contract (ingestion/contract.py).
Each table is a folder of batches written by `creditflow ingest` (``<table>/*.parquet``).
"""

from feast import FileSource, PushSource, RequestSource
from feast.data_format import ParquetFormat

from creditflow.config import get_settings
from creditflow.feast_types import fields_of
from ingestion.contract import APPLICATION_COLUMNS

_settings = get_settings()

zipcode_source = FileSource(
    name="zipcodes",
    path=_settings.table_glob("zipcodes"),
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
    created_timestamp_column="created_timestamp",
)

credit_history_source = FileSource(
    name="credit_history",
    path=_settings.table_glob("credit_history"),
    file_format=ParquetFormat(),
    timestamp_field="event_timestamp",
    created_timestamp_column="created_timestamp",
)

# Fresh bureau records pushed as they arrive (`creditflow push`): validated by the same
# contract, written to the offline batches and straight to the online store.
credit_history_push = PushSource(name="credit_history_push", batch_source=credit_history_source)

# The loan application as it arrives at /predict (and as the labeled loans table holds it).
application = RequestSource(name="application", schema=fields_of(APPLICATION_COLUMNS))
