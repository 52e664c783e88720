"""Training-serving skew: what the service served against what training would have joined.

For a sample of the window's logged predictions, the features are rebuilt point-in-time from
the offline store at the request time, through the model's FeatureService and Feast's
``get_historical_features`` (the path training uses), and compared value by value with the
``features`` the service logged: numbers within ``SKEW_RELATIVE_TOLERANCE``, categories
exactly, two missing values equal. Rebuilding needs the application as received and the
entity keys, which the log keeps (the keys encrypted: ``creditflow.applicant_keys``); rows
logged without them cannot be rebuilt and are counted apart.

Late-arriving offline data explains some mismatches: when the offline row the join picks was
written after the request (its ``created_timestamp`` is later than the request time), the
online store could not have had it then. Such a mismatch is reported apart (metric
``late_mismatch_rate``, INFO) and left out of the judged ``mismatch_rate``. A feature of an
on-demand view depends on every batch view the on-demand view reads (the request's own fields
on none).
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import datetime
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import sqlalchemy as sa

from creditflow import clock
from creditflow.applicant_keys import InvalidToken, key_cipher
from creditflow.contract import APPLICATIONS, LOANS
from creditflow.monitoring import thresholds as th
from creditflow.monitoring.results import Result
from creditflow.monitoring.window import Window
from creditflow.store.features import get_service, get_store
from creditflow.store.point_in_time import historical_features
from creditflow.tables import predictions

if TYPE_CHECKING:
    from feast import FeatureStore

SECTION = "skew"
SAMPLE_SEED = 0  # the sample of a window is the same on every run
ROW = LOANS.key[0]  # historical_features keys entity rows by the loans' key: here, row numbers
TIME = LOANS.timestamp
EXAMPLES = 3  # mismatching values kept in a result's details, per feature
_EVENT, _CREATED = "__event_timestamp", "__created_timestamp"


def sample_ids(
    engine: sa.Engine,
    model_tag: str,
    start: datetime,
    as_of: datetime,
    size: int = th.SKEW_SAMPLE,
    seed: int = SAMPLE_SEED,
) -> tuple[list[str], dict]:
    """A deterministic sample of the ids of the model's predictions logged in (start, as_of]
    with their application and encrypted keys, and the counts: ``window_predictions`` and
    ``rebuildable`` (those that have both)."""
    in_window = sa.and_(
        predictions.c.model_tag == model_tag,
        predictions.c.at > clock.as_utc(start),
        predictions.c.at <= clock.as_utc(as_of),
    )
    rebuildable = sa.and_(predictions.c.application.is_not(None),
                          predictions.c.entity_keys.is_not(None))  # fmt: skip
    with engine.connect() as conn:
        total = conn.execute(sa.select(sa.func.count()).where(in_window)).scalar_one()
        ids = conn.execute(
            sa.select(predictions.c.prediction_id)
            .where(in_window, rebuildable)
            .order_by(predictions.c.prediction_id)
        ).scalars().all()  # fmt: skip
    chosen = np.random.default_rng(seed).choice(len(ids), min(size, len(ids)), replace=False)
    counts = {"window_predictions": int(total), "rebuildable": len(ids)}
    return [ids[i] for i in sorted(chosen)], counts


def logged_rows(engine: sa.Engine, ids: list[str]) -> pd.DataFrame:
    """The logged predictions ``ids`` (id, time, features, application, encrypted keys)."""
    columns = [predictions.c[n] for n in ("prediction_id", "at", "features", "application",
                                          "entity_keys")]  # fmt: skip
    found = []
    with engine.connect() as conn:
        for first in range(0, len(ids), 500):
            chunk = ids[first : first + 500]
            query = sa.select(*columns).where(predictions.c.prediction_id.in_(chunk))
            found += conn.execute(query).all()
    frame = pd.DataFrame(found, columns=[c.name for c in columns])
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    return frame.sort_values("prediction_id", ignore_index=True)


def _typed(column, value: Any) -> Any:
    """A logged application value as the contract types it; ValueError naming the field."""
    if value is None:
        raise ValueError(f"{column.name} is missing")
    try:
        return {"int": int, "float": float, "str": str}[column.kind](value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{column.name} = {value!r} is not {column.kind}") from err


def entity_rows(rows: pd.DataFrame, cipher) -> tuple[pd.DataFrame, dict[str, str]]:
    """What Feast joins on, one entity row per logged row that can be rebuilt (``ROW``: its
    position in ``rows``; the request time as the event time; keys decrypted; the application
    fields as request data), and why each other row cannot be (by prediction id)."""
    entities, unusable = [], {}
    for position, row in enumerate(rows.itertuples(index=False)):
        try:
            if not isinstance(row.application, dict):
                raise ValueError("no application logged")
            values = {**row.application, **cipher.decrypt(row.entity_keys)}
            entity = {c.name: _typed(c, values.get(c.name)) for c in APPLICATIONS.columns}
        except InvalidToken:
            unusable[row.prediction_id] = "entity keys do not decrypt with this home's key"
            continue
        except ValueError as err:
            unusable[row.prediction_id] = f"application: {err}"
            continue
        entities.append({ROW: position, TIME: row.at, **entity})
    frame = pd.DataFrame(entities, columns=[ROW, TIME, *APPLICATIONS.names])
    for column in APPLICATIONS.columns:
        if column.kind == "int":
            frame[column.name] = frame[column.name].astype("int64")
    frame[TIME] = pd.to_datetime(frame[TIME], utc=True)
    return frame, unusable


def feature_sources(store: FeatureStore, service_name: str) -> dict[str, tuple[str, ...]]:
    """The batch feature views each of the service's features is read or computed from."""
    sources: dict[str, tuple[str, ...]] = {}
    for projection in get_service(store, service_name).feature_view_projections:
        names = [field.name for field in projection.features]
        try:
            view = store.get_on_demand_feature_view(projection.name)
        except Exception:  # a batch feature view (Feast raises its own NotFound per registry)
            sources.update(dict.fromkeys(names, (projection.name,)))
            continue
        request = set(view.get_request_data_schema())
        read = tuple(p.name for p in view.source_feature_view_projections.values())
        sources.update({name: () if name in request else read for name in names})
    return sources


def late_rows(store: FeatureStore, view_name: str, entities: pd.DataFrame) -> np.ndarray:
    """Per entity row: whether the row the point-in-time join picks from this view (the newest
    event at or before the request time within the TTL, ties broken by ``created_timestamp``,
    as Feast picks) was written after the request time."""
    from feast.infra.offline_stores.offline_utils import get_offline_store_from_config

    view = store.get_feature_view(view_name)
    source = view.batch_source
    if not source.created_timestamp_column:  # no write times: nothing can be shown late
        return np.zeros(len(entities), dtype=bool)
    keys = list(view.join_keys)
    ttl = view.ttl if view.ttl and view.ttl.total_seconds() > 0 else None
    earliest = entities[TIME].min()
    offline = get_offline_store_from_config(store.config.offline_store)
    job = offline.pull_all_from_table_or_query(
        config=store.config, data_source=source, join_key_columns=keys,
        feature_name_columns=[], timestamp_field=source.timestamp_field,
        created_timestamp_column=source.created_timestamp_column,
        start_date=(earliest - ttl if ttl else earliest - pd.Timedelta(days=365 * 100)),
        end_date=entities[TIME].max(),
    )  # fmt: skip
    stored = job.to_df().rename(
        columns={source.timestamp_field: _EVENT, source.created_timestamp_column: _CREATED}
    )
    wanted = entities[[ROW, TIME, *keys]].astype({k: stored[k].dtype for k in keys})
    pairs = wanted.merge(stored, on=keys)  # times parsed for these rows only, not the view's
    for name in (_EVENT, _CREATED):
        pairs[name] = pd.to_datetime(pairs[name], utc=True)
    seen = pairs[_EVENT] <= pairs[TIME]
    if ttl:
        seen &= pairs[_EVENT] >= pairs[TIME] - ttl
    picked = (
        pairs[seen].sort_values([ROW, _EVENT, _CREATED]).drop_duplicates(ROW, keep="last")
    )  # fmt: skip
    late = set(picked.loc[picked[_CREATED] > picked[TIME], ROW])
    return entities[ROW].isin(late).to_numpy()


def late_mismatches(
    store: FeatureStore,
    entities: pd.DataFrame,
    mismatches: dict[str, np.ndarray],
    sources: dict[str, tuple[str, ...]],
) -> dict[str, np.ndarray]:
    """:func:`late_rows` per batch view, asked only about the entity rows where a feature read
    from that view mismatched: lateness explains a mismatch and nothing else, and reading a
    view's offline rows for every sampled request is most of the check's time (the whole
    table, on a view with a long TTL). Rows not asked about are False."""
    found = {}
    for view in sorted({v for name in mismatches for v in sources.get(name, ())}):
        asked = np.zeros(len(entities), dtype=bool)
        for name, mismatch in mismatches.items():
            if view in sources.get(name, ()):
                asked |= mismatch
        late = np.zeros(len(entities), dtype=bool)
        if asked.any():
            late[asked] = late_rows(store, view, entities[asked].reset_index(drop=True))
        found[view] = late
    return found


def _missing(value: Any) -> bool:
    return value is None or (np.ndim(value) == 0 and bool(pd.isna(value)))


def same_value(served: Any, offline: Any, categorical: bool) -> bool:
    """Equal as the check defines it: both missing; categories exactly; numbers within
    ``SKEW_RELATIVE_TOLERANCE`` of each other."""
    if _missing(served) or _missing(offline):
        return _missing(served) and _missing(offline)
    if categorical:
        return served == offline
    try:
        return math.isclose(float(served), float(offline), rel_tol=th.SKEW_RELATIVE_TOLERANCE)
    except (TypeError, ValueError):
        return False


def _plain(value: Any) -> Any:
    """A value for JSON details: numpy scalars as Python ones, missing as None."""
    if _missing(value):
        return None
    return value.item() if isinstance(value, np.generic) else value


def skew_results(window: Window) -> list[Result]:
    """Training-serving skew of the window's model on a sample of its logged predictions.

    Per feature (subject): ``mismatch_rate`` (judged by ``SKEW_MISMATCH_*``: mismatches not
    explained by late offline data, over the rows compared less those late mismatches) and
    ``late_mismatch_rate`` (INFO: mismatches explained by an offline row written after the
    request, over the rows compared). Details of both: ``compared``, ``mismatches``, ``late``
    and up to ``EXAMPLES`` ``examples`` ({prediction_id, at, served, offline}).
    Subject "all", metric ``sampled`` (INFO): the rows sampled, with the counts that account
    for them: ``window_predictions``, ``rebuildable`` (logged with application and keys),
    ``compared``, ``unusable`` (by reason) and ``rows_with_mismatch`` /
    ``rows_with_late_mismatch``.
    """
    settings, tag = window.settings, window.model_tag
    ids, counts = sample_ids(window.engine, tag, window.start, window.as_of)
    rows = logged_rows(window.engine, ids)
    entities, unusable = entity_rows(rows, key_cipher(settings))
    summary: dict[str, Any] = {**counts, "compared": len(entities), "seed": SAMPLE_SEED,
                               "unusable": _reasons(unusable)}  # fmt: skip
    if entities.empty:
        return [Result(SECTION, "sampled", "all", float(len(rows)), th.INFO, None, tag, summary)]
    contract = window.model.contract
    store = get_store(settings)
    offline = historical_features(entities, contract.service, settings, store)
    sources = feature_sources(store, contract.service)
    served = [f if isinstance(f, dict) else {} for f in rows["features"].iloc[entities[ROW]]]
    ids = rows["prediction_id"].iloc[entities[ROW]].tolist()
    mismatches = {
        name: np.array([not same_value(s.get(name), o, name in contract.categorical)
                        for s, o in zip(served, offline[name].tolist(), strict=True)],
                       dtype=bool)
        for name in contract.names
    }  # fmt: skip
    late_by_view = late_mismatches(store, entities, mismatches, sources)
    any_judged = np.zeros(len(entities), dtype=bool)
    any_late = np.zeros(len(entities), dtype=bool)
    found: list[Result] = []
    for name in contract.names:
        theirs = offline[name].tolist()
        mismatch = mismatches[name]
        late = np.zeros(len(entities), dtype=bool)
        for view in sources.get(name, ()):
            late |= late_by_view[view]
        late &= mismatch
        judged = mismatch & ~late
        any_judged |= judged
        any_late |= late

        def examples(mask: np.ndarray, name: str = name, theirs: list = theirs) -> list[dict]:
            return [{"prediction_id": ids[i], "at": entities[TIME].iloc[i].isoformat(),
                     "served": _plain(served[i].get(name)), "offline": _plain(theirs[i])}
                    for i in np.flatnonzero(mask)[:EXAMPLES]]  # fmt: skip

        n, n_late, n_judged = len(entities), int(late.sum()), int(judged.sum())
        details = {"compared": n, "mismatches": int(mismatch.sum()), "late": n_late}
        rate = n_judged / (n - n_late) if n > n_late else None
        found += [
            Result(SECTION, "mismatch_rate", name, rate,
                   th.status_of(rate, th.SKEW_MISMATCH_WATCH, th.SKEW_MISMATCH_ALERT),
                   th.SKEW_MISMATCH_ALERT, tag, {**details, "examples": examples(judged)}),
            Result(SECTION, "late_mismatch_rate", name, n_late / n, th.INFO, None, tag,
                   {**details, "examples": examples(late)}),
        ]  # fmt: skip
    summary.update(rows_with_mismatch=int(any_judged.sum()),
                   rows_with_late_mismatch=int(any_late.sum()))  # fmt: skip
    return [Result(SECTION, "sampled", "all", float(len(rows)), th.INFO, None, tag, summary),
            *found]  # fmt: skip


def _reasons(unusable: dict[str, str]) -> dict[str, int]:
    """Rows that could not be rebuilt, counted by reason."""
    return dict(Counter(unusable.values()))
