"""`creditflow score-batch` reads files as `creditflow ingest` does: the CSV's encoding and date
format are options, a byte the encoding cannot read names its line, and a line that breaks the
CSV's quoting is reported as that line, its neighbours scored."""

from __future__ import annotations

import pandas as pd
import pytest

from creditflow.batch.score import score_batch
from creditflow.ingestion.offline import newest_applications
from creditflow.ingestion.readers import SchemaError


def _csv(demo_home, rows: int) -> str:
    """A latin-1 CSV of real applications with day-first times and an unterminated quote."""
    apps = pd.DataFrame(newest_applications(demo_home.settings, rows))
    apps["note"] = "café"  # not a contract column: carried, not checked
    apps["event_timestamp"] = demo_home.materialized_at.strftime("%d/%m/%Y %H:%M")
    lines = apps.to_csv(index=False).splitlines()
    broken = lines[2].replace("café", '"café')  # a quote that never closes
    return "\n".join([*lines[:2], broken, *lines[3:]]) + "\n"


def test_encoding_and_date_format_are_options_and_a_broken_line_is_reported(demo_home, tmp_path):
    source = tmp_path / "applications.csv"
    source.write_bytes(_csv(demo_home, 6).encode("latin-1"))
    output = tmp_path / "scored.parquet"
    with pytest.raises(SchemaError, match="line 2.*--encoding latin-1"):
        score_batch(str(source), output, settings=demo_home.settings)
    assert not output.exists()  # nothing half-written

    summary = score_batch(str(source), output, settings=demo_home.settings,
                          encoding="latin-1", date_format="%d/%m/%Y %H:%M")  # fmt: skip
    assert (summary["rows_in"], summary["scored"], summary["invalid"]) == (6, 5, 1)
    scored = pd.read_parquet(output)
    assert len(scored) == 6
    assert scored["error"].isna().sum() == 5
    [error] = scored["error"].dropna().tolist()
    assert error.startswith("unparseable CSV line 3 of ") and "quote" in error
