"""Where features come from: the offline parquet tables and the application at request time.

Schemas are not restated here: they are read from the data contract (creditflow/contract.py).
Each table is a folder of batches written by `creditflow ingest` (``<table>/*.parquet``).
"""

from feast import FileSource, PushSource, RequestSource
from feast.data_format import ParquetFormat

from creditflow.config import get_settings
from creditflow.contract import (
    APPLICATION_COLUMNS,
    CREATED_TIMESTAMP,
    CREDIT_HISTORY,
    ZIPCODES,
    TableContract,
)
from creditflow.feast_types import fields_of

_settings = get_settings()


def _offline_table(table: TableContract) -> FileSource:
    """A contract table's accepted batches in the offline store, with its two times."""
    return FileSource(
        name=table.name,
        path=_settings.table_glob(table.name),
        file_format=ParquetFormat(),
        timestamp_field=table.timestamp,
        created_timestamp_column=CREATED_TIMESTAMP,
    )


zipcode_source = _offline_table(ZIPCODES)
credit_history_source = _offline_table(CREDIT_HISTORY)

# Fresh bureau records pushed as they arrive (`creditflow push`): validated by the same
# contract, written to the offline batches and straight to the online store.
credit_history_push = PushSource(name="credit_history_push", batch_source=credit_history_source)

# The loan application as it arrives at /predict (and as the labeled loans table holds it).
application = RequestSource(name="application", schema=fields_of(APPLICATION_COLUMNS))
