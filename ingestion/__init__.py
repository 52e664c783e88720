"""Data sources and validation: readers (files, folders, SQL), conformance to the data contract
(``creditflow.contract``), quarantine, the ingestion ledger and the offline store's batches."""
