"""Deterministic synthetic lending world: loans, zipcodes and credit-history snapshots.

The demo needs data shaped exactly like the public Feast credit-scoring tutorial (so real tables
of that schema drop in unchanged), large enough to train on, and with the properties that make a
feature store worth having:

* credit-history snapshots are taken both before and after each loan, and defaulters' post-loan
  snapshots show the missed payments the default caused, so a join that ignores time leaks the
  label and looks better than reality;
* zipcode statistics change over time, so they also need an as-of join;
* a controlled share of loan rows is dirty, for the validation layer to catch.

Everything is vectorized numpy (a million loans in seconds) and seeded through
``numpy.random.default_rng`` so the same arguments always give the same tables.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from creditflow import clock
from creditflow.contract import (
    CREDIT_HISTORY,
    HOME_OWNERSHIP,
    LOAN_INTENTS,
    LOANS,
    LOCATION_TYPES,
    ZIPCODES,
    violations,
)
from creditflow.contract import TABLES as SOURCE_TABLES

DEFAULT_LOANS = 30_000
DEFAULT_DIRTY_SHARE = 0.01
TABLES = tuple(SOURCE_TABLES)  # the contract's source tables, by name

STATES = (
    "MA", "CT", "NJ", "NY", "PA", "MD", "VA", "WV", "NC", "SC",
    "GA", "FL", "AL", "TN", "MS", "KY", "OH", "IN", "MI", "IA",
    "WI", "MN", "IL", "MO", "KS", "NE", "LA", "AR", "OK", "TX",
    "CO", "ID", "UT", "AZ", "NM", "NV", "CA", "OR", "WA", "AK",
)  # fmt: skip

LOAN_COLUMNS = tuple(LOANS.names)

_DAY = 86_400  # seconds; all times are int64 seconds relative to `end` (negative = before)
_YEAR = 365 * _DAY
_PERSON_SHARE = 0.85  # persons per loan: ~15% of loans go to repeat borrowers
_THIN_FILE_SHARE = 0.03  # persons whose first credit snapshot comes after their first loan
_NEVER = 10**15  # time sentinel (never defaulted / no update): after any event, no overflow
_INTENT_P = np.array([0.20, 0.19, 0.17, 0.17, 0.16, 0.11])
_INTENT_AMOUNT = np.array([0.85, 0.95, 1.15, 1.0, 1.1, 1.25])  # loan size multiplier
_INTENT_RISK = np.array([-0.15, 0.25, 0.10, 0.0, 0.20, -0.10])  # logit shift
_HOME_RISK = np.array([0.30, -0.20, -0.05, 0.40])  # RENT, OWN, MORTGAGE, OTHER
# Label model. Calibrated offline (30k loans, seeds 0-3) to a ~21% default rate and a time-split
# (80/20) XGBoost ROC AUC of ~0.87-0.89 on point-in-time joined features; joining the latest
# credit snapshot instead (the leak) gives ~0.90-0.92. Change these and recalibrate together.
_RISK_SCALE = 2.0
_RATE_WEIGHT = 0.12
_LABEL_NOISE = 0.3
_LABEL_INTERCEPT = -4.45
_EARLY_DEFAULT_SHARE = 0.8  # defaults whose missed payments start within the first month

_CITY_HEADS = (
    "Oak", "Maple", "Cedar", "Pine", "Elm", "Willow", "Ash", "Birch", "Spring", "Clear",
    "Stone", "Iron", "Silver", "Golden", "Red", "Green", "Black", "White", "Fair", "Glen",
    "Brook", "River", "Lake", "Hill", "Rock", "Sand", "Bay", "Harbor", "Meadow", "Forest",
    "Summer", "Winter", "Eagle", "Fox", "Deer", "Bear", "Wolf", "Hawk", "Sun", "Moon",
)  # fmt: skip
_CITY_TAILS = (
    "ville", "ton", "field", "wood", "dale", "ford", "burg", "port", "view", "mont",
    "haven", "ridge", "crest", "side", "brook", "land", "worth", "bury", "stead", "mouth",
    "gate", "well", "creek", "falls", " Springs",
)  # fmt: skip
_CITY_PREFIXES = (
    "", "", "", "", "", "North ", "South ", "East ", "West ", "New ", "Port ", "Mount ",
)  # fmt: skip


def generate_world(
    n_loans: int = DEFAULT_LOANS,
    seed: int = 0,
    end: datetime | None = None,
    dirty_share: float = DEFAULT_DIRTY_SHARE,
    *,
    loan_days: int = 365,
    zip_seed: int | None = None,
    income_scale: float = 1.0,
    rate_weight: float = _RATE_WEIGHT,
) -> dict[str, pd.DataFrame]:
    """Generate the ``loans``, ``zipcodes`` and ``credit_history`` tables.

    Loans fall in the year before ``end`` (tz-aware UTC; None = today 00:00 UTC, so the demo's
    features are fresh). Output depends only on the arguments.

    The keyword-only hooks leave the default world unchanged; the lifecycle simulation
    (demo_world/scenarios.py) uses them to grow one world day by day and to change it:
    ``loan_days`` (loans in the last that many days instead of a year: one day's applicants),
    ``zip_seed`` (the zipcode table drawn from its own seed, so that worlds generated for
    different days share one; its size is then the default world's), ``income_scale``
    (every applicant's true income times this: covariate drift) and ``rate_weight`` (the
    interest rate's weight in the default logit: concept drift).
    """
    if not 1 <= loan_days <= 365:
        raise ValueError(f"loan_days must be within [1, 365], got {loan_days}")
    if not income_scale > 0:
        raise ValueError(f"income_scale must be > 0, got {income_scale}")
    if n_loans < 1:
        raise ValueError(f"n_loans must be >= 1, got {n_loans}")
    if not 0.0 <= dirty_share <= 1.0:
        raise ValueError(f"dirty_share must be within [0, 1], got {dirty_share}")
    if end is None:
        end = clock.now().replace(hour=0, minute=0, second=0, microsecond=0)
    if end.tzinfo is None or end.utcoffset() is None:
        raise ValueError("end must be a timezone-aware (UTC) datetime")
    end_ts = pd.Timestamp(end).tz_convert("UTC")
    rng = np.random.default_rng(seed)
    n = int(n_loans)
    n_persons = min(n, max(1, round(n * _PERSON_SHARE)))

    if zip_seed is None:
        zips = _zip_snapshots(rng, n)
    else:
        zip_rng = np.random.default_rng(zip_seed)
        zips = _zip_snapshots(zip_rng, DEFAULT_LOANS)
        zip_frame = _zip_frame(zip_rng, zips, end_ts)
    people = _persons(rng, n_persons, end_ts, zips, income_scale)

    # Loans: times uniform over the year before `end`; every person has at least one loan.
    loan_t = np.sort(rng.integers(-loan_days * _DAY, 0, n))
    repeats = rng.integers(0, n_persons, n - n_persons)
    loan_person = rng.permutation(np.concatenate([np.arange(n_persons), repeats]))
    order = np.argsort(loan_person, kind="stable")  # loans are time-sorted, so this is (person, t)
    counts = np.bincount(loan_person, minlength=n_persons)
    starts = np.cumsum(counts) - counts
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n) - np.repeat(starts, counts)
    first_loan_t = loan_t[order[starts]]

    credit = _credit_snapshots(rng, people, first_loan_t)
    loans = _loans(rng, n, loan_t, loan_person, rank, people, zips, credit, end_ts, rate_weight)
    world = {
        ZIPCODES.name: _zip_frame(rng, zips, end_ts) if zip_seed is None else zip_frame,
        CREDIT_HISTORY.name: _credit_frame(rng, credit, people, end_ts),
    }
    # Last, so that dirty_share changes only the dirty rows, never the clean world.
    _make_dirty(rng, loans, round(n * dirty_share))
    return {LOANS.name: pd.DataFrame(loans, columns=list(LOAN_COLUMNS)), **world}


def write_world(world: dict[str, pd.DataFrame], out_dir: Path) -> dict[str, Path]:
    """Write each table to ``out_dir/<table>.parquet`` and return the paths.

    Each file is written to a temporary name and moved into place with ``os.replace``, so a
    reader (or a crashed run) never sees a half-written parquet file.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    for name, frame in world.items():
        target = out_dir / f"{name}.parquet"
        fd, tmp_name = tempfile.mkstemp(prefix=f".{name}.", suffix=".parquet.tmp", dir=out_dir)
        os.close(fd)
        try:
            frame.to_parquet(tmp_name, index=False)
            os.replace(tmp_name, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp_name)
            raise
        paths[name] = target
    return paths


def dirty_mask(loans: pd.DataFrame) -> pd.Series:
    """Flag loan rows that break the data contract (ranges, nulls, unknown categories).

    Recomputed from the contract rather than remembered from generation, so it also works on
    user-supplied tables and lets tests check the generator independently.
    """
    return (violations(loans.reset_index(drop=True), LOANS) != "").rename("dirty")


# --------------------------------------------------------------------------- helpers


def _group_cumsum(values: np.ndarray, starts: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Cumulative sum restarted at each contiguous group (random walks per person)."""
    total = np.cumsum(values)
    return total - np.repeat(total[starts] - values[starts], counts)


def _ymd(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    years = days.astype("datetime64[Y]")
    months = days.astype("datetime64[M]")
    return (
        years.astype(np.int64) + 1970,
        (months - years.astype("datetime64[M]")).astype(np.int64) + 1,
        (days - months.astype("datetime64[D]")).astype(np.int64) + 1,
    )


def _calendar_age(born: np.ndarray, on: np.ndarray) -> np.ndarray:
    """Age in whole years, as a person would state it (birthday passed or not)."""
    by, bm, bd = _ymd(born)
    oy, om, od = _ymd(on)
    return oy - by - ((om < bm) | ((om == bm) & (od < bd))).astype(np.int64)


def _timestamps(end_ts: pd.Timestamp, seconds: np.ndarray) -> pd.DatetimeIndex:
    ns = end_ts.value + seconds.astype(np.int64) * 1_000_000_000
    return pd.DatetimeIndex(ns.view("datetime64[ns]")).tz_localize("UTC")


def _dob_ssn(ymd: np.ndarray, ssn: np.ndarray) -> np.ndarray:
    """Format ``YYYYMMDD_NNNN`` strings without a Python loop over rows."""
    digits = (ymd * 10_000 + ssn).astype("S12").view(np.uint8).reshape(-1, 12)
    out = np.empty((len(ymd), 13), dtype=np.uint8)
    out[:, :8] = digits[:, :8]
    out[:, 8] = ord("_")
    out[:, 9:] = digits[:, 8:]
    return out.view("S13").ravel().astype(str).astype(object)


def _zip_snapshots(rng: np.random.Generator, n_loans: int) -> dict:
    n_zip = min(5_000, max(200, n_loans // 15))
    codes = np.sort(rng.choice(np.arange(1_001, 99_951), n_zip, replace=False))
    # Contiguous zip ranges per state, like real zip prefixes.
    bounds = np.cumsum(rng.dirichlet(np.full(len(STATES), 2.0)))
    state = np.minimum(np.searchsorted(bounds, (np.arange(n_zip) + 0.5) / n_zip), len(STATES) - 1)
    population = np.clip(np.exp(rng.normal(np.log(12_000), 0.9, n_zip)), 300, 150_000)
    returns_share = rng.uniform(0.40, 0.52, n_zip)
    wage_per_return = 52_000 * np.exp(rng.normal(0.0, 0.30, n_zip))
    has_update = rng.random(n_zip) < 0.20
    pop2 = population * np.exp(rng.normal(0.01, 0.03, n_zip))
    wage2 = wage_per_return * np.exp(rng.normal(0.03, 0.05, n_zip))
    returns1 = np.round(population * returns_share)
    returns2 = np.round(pop2 * returns_share)
    return {
        "n": n_zip,
        "code": codes,
        "state": state,
        "pop": np.stack([np.round(population), np.round(pop2)]).astype(np.int64),
        "returns": np.stack([returns1, returns2]).astype(np.int64),
        "wages": np.stack([returns1 * wage_per_return, returns2 * wage2]).astype(np.int64),
        "t1": -730 * _DAY + rng.integers(0, _DAY, n_zip),
        "t2": np.where(has_update, rng.integers(-_YEAR, -_DAY, n_zip), _NEVER),
        "has_update": has_update,
    }


def _persons(
    rng: np.random.Generator, n: int, end_ts: pd.Timestamp, zips: dict, income_scale: float = 1.0
) -> dict:
    # Age at the start of the loan window: skewed young like real applicants, within
    # [20.02, 74.42] years so the calendar age at any loan in the window lies in [20, 75].
    age_ref = 20.02 + rng.gamma(2.0, 6.5, n) % 54.4
    ref_day = np.datetime64(end_ts.date(), "D") - 366
    born = ref_day - np.round(age_ref * 365.25).astype("timedelta64[D]")
    by, bm, bd = _ymd(born)
    ymd = by * 10_000 + bm * 100 + bd
    ssn = rng.integers(0, 10_000, n)
    while True:  # make dob_ssn unique: redraw the 4 digits of colliding persons
        _, first = np.unique(ymd * 10_000 + ssn, return_index=True)
        dup = np.ones(n, dtype=bool)
        dup[first] = False
        if not dup.any():
            break
        ssn[dup] = rng.integers(0, 10_000, int(dup.sum()))

    zip_weights = zips["pop"][0] / zips["pop"][0].sum()
    zip_idx = rng.choice(zips["n"], n, p=zip_weights)
    zip_wage = zips["wages"][0][zip_idx] / zips["pop"][0][zip_idx]
    age_curve = 0.45 * (1.0 - ((age_ref - 50.0) / 28.0) ** 2)
    log_income = (
        np.log(43_000) + age_curve + 0.45 * np.log(zip_wage / 23_000) + rng.normal(0, 0.5, n)
    )
    income = np.exp(log_income) if income_scale == 1.0 else np.exp(log_income) * income_scale
    income = np.clip(np.round(income, -2), 4_000, 3_000_000).astype(np.int64)
    emp_ref = np.minimum(30.0, (age_ref - 18.0) * rng.beta(1.3, 2.2, n))

    own_score = 0.06 * (age_ref - 32.0) + 1.1 * np.log(income / 55_000) + rng.normal(0, 1, n)
    older = age_ref > 55
    home = np.where(
        rng.random(n) < 0.012,
        3,
        np.where(own_score < 0.1, 0, np.where(rng.random(n) < 0.10 + 0.25 * older, 1, 2)),
    )
    # Hidden credit quality (higher = worse); only visible through credit-history values.
    quality = rng.normal(0, 1, n) - 0.2 * np.log(income / 55_000) / 0.5
    return {
        "n": n,
        "age_ref": age_ref,
        "born": born,
        "dob_ssn": _dob_ssn(ymd, ssn),
        "zip": zip_idx,
        "income": income,
        "emp_ref": emp_ref,
        "home": home,
        "quality": quality,
    }


def _credit_snapshots(rng: np.random.Generator, people: dict, first_loan_t: np.ndarray) -> dict:
    """Snapshot times and pre-default values; default effects are applied later, per loan.

    Each person's file runs from before the first loan (after it for thin-file persons) to a
    recent refresh shortly before ``end``, every one to three months or so, 2-6 snapshots.
    """
    n = people["n"]
    eligible = np.flatnonzero(first_loan_t <= -150 * _DAY)
    n_thin = min(len(eligible), round(_THIN_FILE_SHARE * n))
    thin = np.zeros(n, dtype=bool)
    thin[rng.choice(eligible, n_thin, replace=False)] = True
    lead = rng.integers(_DAY, 120 * _DAY, n)
    lag = rng.integers(_DAY, 30 * _DAY, n)
    first = np.where(thin, first_loan_t + lag, first_loan_t - lead)
    last = np.maximum(-rng.integers(_DAY, 20 * _DAY, n), first + 20 * _DAY)
    last = np.minimum(last, -1)  # strictly before `end`
    span = last - first
    gaps = np.ceil(span / rng.integers(30 * _DAY, 95 * _DAY, n)).astype(np.int64)
    k = np.clip(gaps + 1, 2, 6)

    starts = np.cumsum(k) - k
    person = np.repeat(np.arange(n), k)
    pos = np.arange(k.sum()) - np.repeat(starts, k)
    # Evenly spaced with jitter; interior jitter < half a step keeps times increasing.
    steps = (k - 1)[person]
    jitter = np.where((pos > 0) & (pos < steps), rng.uniform(-0.2, 0.2, len(pos)), 0.0)
    t = first[person] + np.round((pos + jitter) / steps * span[person]).astype(np.int64)
    size = len(t)
    q = people["quality"][person]
    income = people["income"][person].astype(float)

    def walk(scale: float) -> np.ndarray:
        return _group_cumsum(np.where(pos == 0, 0.0, rng.normal(0, scale, size)), starts, k)

    m6, m1y, m2y = _missed_payment_history(rng, t, pos, np.exp(-1.7 + 0.85 * q + walk(0.3)) / 6)
    pulls0 = rng.poisson(np.exp(-0.1 + 0.35 * people["quality"]))[person]
    pull_steps = np.where(pos == 0, 0, rng.integers(-1, 2, size))
    hard_pulls = np.maximum(0, pulls0 + _group_cumsum(pull_steps, starts, k))
    bank0 = rng.random(n) < 1 / (1 + np.exp(4.3 - 0.9 * people["quality"]))
    bank_step = (pos > 0) & (rng.random(size) < 0.003 * np.exp(0.8 * q))
    bankruptcies = bank0[person] + _group_cumsum(bank_step.astype(np.int64), starts, k)

    years = (t - np.repeat(t[starts], k)) / _YEAR
    has_card = (rng.random(n) < 0.88)[person]
    card = income * 0.05 * np.exp(rng.normal(0, 0.7, n) + 0.3 * people["quality"])[person]
    card = has_card * card * np.exp(walk(0.2))
    mortgage = (people["home"] == 2) * people["income"] * rng.uniform(1.2, 4.0, n)
    mortgage = mortgage[person] * np.exp(-0.05 * years)
    student_p = np.where(people["age_ref"] < 35, 0.45, 0.12)
    student = (rng.random(n) < student_p) * np.exp(rng.normal(np.log(22_000), 0.6, n))
    student = student[person] * np.exp(-0.08 * years)
    vehicle = (rng.random(n) < 0.40) * np.exp(rng.normal(np.log(14_000), 0.5, n))
    vehicle = vehicle[person] * np.exp(-0.25 * years)

    return {
        "n": size,
        "person": person,
        "t": t,
        "starts": starts,
        "key": (person << 32) + (t + 10 * _YEAR),
        "m6": m6,
        "m1y": m1y,
        "m2y": m2y,
        "hard_pulls": hard_pulls,
        "bankruptcies": bankruptcies,
        "credit_card_due": np.round(card).astype(np.int64),
        "mortgage_due": np.round(mortgage).astype(np.int64),
        "student_loan_due": np.round(student).astype(np.int64),
        "vehicle_loan_due": np.round(vehicle).astype(np.int64),
        "onset": np.full(people["n"], _NEVER, dtype=np.int64),
        # Accounts a defaulter stops paying on: this loan plus their other open credit lines.
        "accounts": 1 + (card > 0) + (mortgage > 0) + (student > 0) + (vehicle > 0),
    }


def _missed_payment_history(
    rng: np.random.Generator, t: np.ndarray, pos: np.ndarray, monthly_rate: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Missed payments in the last 6 months, 1 year and 2 years at each snapshot.

    Counts persist between snapshots (events age from the 6-month into the 1- and 2-year
    windows and drop out after 2 years) instead of being redrawn, as a bureau file would.
    """
    b0 = rng.poisson(6 * monthly_rate)  # events 0-6 months old
    b1 = rng.poisson(6 * monthly_rate)  # 6-12 months old
    b2 = rng.poisson(12 * monthly_rate)  # 12-24 months old
    for j in range(1, int(pos.max()) + 1):
        idx = np.flatnonzero(pos == j)
        prev = idx - 1
        months = (t[idx] - t[prev]) / (_YEAR / 12)
        aged0 = rng.binomial(b0[prev], np.minimum(1.0, months / 6))
        aged1 = rng.binomial(b1[prev], np.minimum(1.0, months / 6))
        expired = rng.binomial(b2[prev], np.minimum(1.0, months / 12))
        b0[idx] = b0[prev] - aged0 + rng.poisson(monthly_rate[idx] * months)
        b1[idx] = b1[prev] - aged1 + aged0
        b2[idx] = b2[prev] - expired + aged1
    return b0, b0 + b1, b0 + b1 + b2


def _missed(credit: dict, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Missed-payment counts at snapshots ``idx``, including any default that preceded them.

    A defaulted borrower misses every monthly payment on each open account from the default
    onset on.
    """
    since = credit["t"][idx] - credit["onset"][credit["person"][idx]]
    months = np.where(since > 0, since // (_YEAR // 12) + 1, 0)
    accounts = credit["accounts"][idx]
    return (
        credit["m6"][idx] + accounts * np.minimum(months, 6),
        credit["m1y"][idx] + accounts * np.minimum(months, 12),
        credit["m2y"][idx] + accounts * np.minimum(months, 24),
    )


def _loans(
    rng: np.random.Generator,
    n: int,
    loan_t: np.ndarray,
    loan_person: np.ndarray,
    rank: np.ndarray,
    people: dict,
    zips: dict,
    credit: dict,
    end_ts: pd.Timestamp,
    rate_weight: float = _RATE_WEIGHT,
) -> dict[str, np.ndarray]:
    income = people["income"][loan_person]
    loan_day = (np.datetime64(end_ts.value, "ns") + loan_t * np.timedelta64(1, "s")).astype(
        "datetime64[D]"
    )
    age = _calendar_age(people["born"][loan_person], loan_day)
    elapsed = (loan_t + _YEAR) / _YEAR
    emp = np.floor(np.minimum(30.0, people["emp_ref"][loan_person] + elapsed))
    home = people["home"][loan_person]
    intent = rng.choice(len(LOAN_INTENTS), n, p=_INTENT_P)
    amount = income * np.exp(rng.normal(np.log(0.13), 0.5, n)) * _INTENT_AMOUNT[intent]
    amount = (np.clip(np.round(amount / 25) * 25, 500, 35_000)).astype(np.int64)

    zip_idx = people["zip"][loan_person]
    snap = (loan_t >= zips["t2"][zip_idx]).astype(np.int64)
    zip_wage = zips["wages"][snap, zip_idx] / zips["pop"][snap, zip_idx]

    # Part of the risk that does not depend on credit history (fixed per loan).
    base = (
        -0.9 * np.log(income / 55_000)
        + 3.0 * (amount / income)
        - 0.04 * np.minimum(emp, 15)
        + _HOME_RISK[home]
        + _INTENT_RISK[intent]
        - 0.35 * np.log(zip_wage / 23_000)
        + 0.015 * np.maximum(0, 30 - age)
    )
    price_noise = rng.normal(0, 1.3, n)
    label_noise = rng.normal(0, _LABEL_NOISE, n)
    uniform = rng.random(n)
    # When missed payments start after a default: often at the first instalments, otherwise
    # at any time during the loan's life (possibly after `end`, i.e. not yet visible).
    onset_delay = np.where(
        rng.random(n) < _EARLY_DEFAULT_SHARE,
        rng.integers(5 * _DAY, 35 * _DAY, n),
        rng.integers(35 * _DAY, 540 * _DAY, n),
    )

    rate = np.empty(n)
    status = np.zeros(n, dtype=np.int64)
    # Loans in order of their rank within the person: a default on an earlier loan shows up
    # in the credit history seen by that person's later loans.
    for r in range(int(rank.max()) + 1):
        li = np.flatnonzero(rank == r)
        pi = loan_person[li]
        pos = np.searchsorted(credit["key"], (pi << 32) + (loan_t[li] + 10 * _YEAR), "right") - 1
        found = (pos >= 0) & (credit["person"][np.maximum(pos, 0)] == pi)
        # Thin-file loans have no snapshot yet; their true history is the first later one.
        idx = np.where(found, pos, credit["starts"][pi])
        m6, m1y, m2y = _missed(credit, idx)
        debt = (
            credit["credit_card_due"][idx]
            + credit["student_loan_due"][idx]
            + credit["vehicle_loan_due"][idx]
        )
        inc = income[li]
        z = (
            base[li]
            + 0.45 * m6
            + 0.25 * (m1y - m6)
            + 0.10 * (m2y - m1y)
            + 0.9 * credit["bankruptcies"][idx]
            + 0.12 * credit["hard_pulls"][idx]
            + 0.25 * np.minimum(debt / inc, 3.0)
            + 0.10 * np.minimum(credit["mortgage_due"][idx] / inc, 5.0)
        )
        rate[li] = np.round(np.clip(11.0 + 1.6 * z + price_noise[li], 5.42, 23.22), 2)
        logit = (
            _LABEL_INTERCEPT + _RISK_SCALE * z + rate_weight * (rate[li] - 11.0) + label_noise[li]
        )
        defaulted = uniform[li] < 1 / (1 + np.exp(-logit))
        status[li] = defaulted
        onset = credit["onset"]
        onset[pi[defaulted]] = np.minimum(
            onset[pi[defaulted]], loan_t[li][defaulted] + onset_delay[li][defaulted]
        )

    return {
        "loan_id": np.arange(1, n + 1, dtype=np.int64),
        "dob_ssn": people["dob_ssn"][loan_person],
        "zipcode": zips["code"][zip_idx],
        "person_age": age,
        "person_income": income,
        "person_home_ownership": np.array(HOME_OWNERSHIP, dtype=object)[home],
        "person_emp_length": emp,
        "loan_intent": np.array(LOAN_INTENTS, dtype=object)[intent],
        "loan_amnt": amount,
        "loan_int_rate": rate,
        "loan_status": status,
        "event_timestamp": _timestamps(end_ts, loan_t),
        "created_timestamp": _timestamps(end_ts, loan_t + rng.integers(1, 600, n)),
    }


def _make_dirty(rng: np.random.Generator, loans: dict[str, np.ndarray], n_dirty: int) -> None:
    """Give exactly ``n_dirty`` rows one defect each (bad range, null or unknown category)."""
    rows = rng.choice(len(loans["loan_id"]), n_dirty, replace=False)
    kind = rng.integers(0, 8, n_dirty)
    defects = (
        ("person_age", -5),
        ("person_age", 144),
        ("person_income", 999_999_999),
        ("person_emp_length", np.nan),
        ("loan_int_rate", np.nan),
        ("person_home_ownership", None),
        ("person_home_ownership", "UNKNOWN"),
        ("loan_intent", "CRYPTO"),
    )
    for i, (column, value) in enumerate(defects):
        loans[column][rows[kind == i]] = value


def _zip_frame(rng: np.random.Generator, zips: dict, end_ts: pd.Timestamp) -> pd.DataFrame:
    n = zips["n"]
    head = rng.integers(0, len(_CITY_HEADS), n)
    tail = rng.integers(0, len(_CITY_TAILS), n)
    prefix = rng.integers(0, len(_CITY_PREFIXES), n)
    city = (
        np.array(_CITY_PREFIXES, dtype=object)[prefix]
        + np.array(_CITY_HEADS, dtype=object)[head]
        + np.array(_CITY_TAILS, dtype=object)[tail]
    )
    location = rng.choice(len(LOCATION_TYPES), n, p=[0.80, 0.15, 0.05])
    upd = np.flatnonzero(zips["has_update"])
    rows = np.concatenate([np.arange(n), upd])
    snap = np.concatenate([np.zeros(n, dtype=np.int64), np.ones(len(upd), dtype=np.int64)])
    t = np.concatenate([zips["t1"], zips["t2"][upd]])
    order = np.lexsort((t, rows))
    rows, snap, t = rows[order], snap[order], t[order]
    return pd.DataFrame(
        {
            "zipcode": zips["code"][rows],
            "city": city[rows],
            "state": np.array(STATES, dtype=object)[zips["state"][rows]],
            "location_type": np.array(LOCATION_TYPES, dtype=object)[location[rows]],
            "tax_returns_filed": zips["returns"][snap, rows],
            "population": zips["pop"][snap, rows],
            "total_wages": zips["wages"][snap, rows],
            "event_timestamp": _timestamps(end_ts, t),
            "created_timestamp": _timestamps(end_ts, t + rng.integers(1, 600, len(t))),
        }
    )


def _credit_frame(
    rng: np.random.Generator, credit: dict, people: dict, end_ts: pd.Timestamp
) -> pd.DataFrame:
    m6, m1y, m2y = _missed(credit, np.arange(credit["n"]))
    return pd.DataFrame(
        {
            "dob_ssn": people["dob_ssn"][credit["person"]],
            "credit_card_due": credit["credit_card_due"],
            "mortgage_due": credit["mortgage_due"],
            "student_loan_due": credit["student_loan_due"],
            "vehicle_loan_due": credit["vehicle_loan_due"],
            "hard_pulls": credit["hard_pulls"].astype(np.int64),
            "missed_payments_2y": m2y.astype(np.int64),
            "missed_payments_1y": m1y.astype(np.int64),
            "missed_payments_6m": m6.astype(np.int64),
            "bankruptcies": credit["bankruptcies"].astype(np.int64),
            "event_timestamp": _timestamps(end_ts, credit["t"]),
            "created_timestamp": _timestamps(
                end_ts, credit["t"] + rng.integers(1, 600, credit["n"])
            ),
        }
    )
