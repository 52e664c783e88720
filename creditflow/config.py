"""Where creditflow keeps its state, and which profile it runs on.

Everything a run creates (data, Feast registry and online store, our SQL tables, the BentoML
model and bento store) lives under one folder, ``CREDITFLOW_HOME``, so that two homes never mix
and a test can use its own. The profile (embedded default or production) is configuration only:
it picks the ``feature_store.yaml`` and the database URL, never the code path.
"""

from __future__ import annotations

import os
from functools import cached_property
from importlib.util import find_spec
from pathlib import Path
from typing import Literal

from platformdirs import user_data_dir
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

# The Feast repo folder, wherever the package is installed (a clone, or site-packages): found,
# not imported (importing it is Feast's business).
FEATURE_REPO = Path(find_spec("creditflow.feature_repo").submodule_search_locations[0])

# The model's feature contract: the one FeatureService that training and serving read.
MODEL_FEATURE_SERVICE = "credit_model_v1"
# Name of the model in the BentoML model store (the registry).
MODEL_NAME = "credit_risk"
# Most applications one /predict_batch call may carry (CREDITFLOW_MAX_BATCH overrides).
MAX_BATCH_DEFAULT = 1000
# Largest request body the service reads (CREDITFLOW_MAX_BODY_BYTES overrides); larger is a 413
# before it is read. A full /predict_batch of MAX_BATCH_DEFAULT applications is about 230 KB.
MAX_BODY_BYTES_DEFAULT = 1024 * 1024

PROFILE_YAML = {
    "embedded": FEATURE_REPO / "feature_store.yaml",
    "production": FEATURE_REPO / "profiles" / "production" / "feature_store.yaml",
}


class Settings(BaseSettings):
    """Run-time settings, read from ``CREDITFLOW_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix="CREDITFLOW_", extra="ignore")

    # Everything a run creates; default: the user's data folder (never inside the package).
    home: Path = Field(default=Path(user_data_dir("creditflow")))
    profile: Literal["embedded", "production"] = "embedded"
    # SQLAlchemy URL of our own tables; default: a SQLite file in the home.
    database_url: str | None = None
    # Postgres and Redis of the production profile.
    pg_url: str = "postgresql+psycopg://root@127.0.0.1:5432/creditflow"
    redis_url: str = "127.0.0.1:6379"
    # Ingestion: event times older than this, or later than now plus the tolerance, are
    # rejected as implausible.
    max_event_age_days: int = Field(default=3650, gt=0)
    max_batch: int = Field(default=MAX_BATCH_DEFAULT, gt=0)
    # Each server on a home gets its own Prometheus directory (bento/metrics_dir.py); 0: BentoML's
    # shared one, which every start empties.
    own_metrics_dir: bool = True
    max_body_bytes: int = Field(default=MAX_BODY_BYTES_DEFAULT, gt=0)
    # The prediction log writes a batch at least this often (seconds).
    prediction_log_interval_s: float = Field(default=0.5, gt=0, allow_inf_nan=False)
    future_tolerance_minutes: int = Field(default=5, ge=0)
    # The fast paths that rely on library internals (model/booster_calls.py, model/leaf_tables.py,
    # creditflow/store/service_features.py), each checked against the public API when loaded;
    # False (CREDITFLOW_FAST_PATHS=0): the public APIs of XGBoost and Feast only.
    fast_paths: bool = True

    # --- training: how much `creditflow train` and `retrain` favour recent outcomes ---
    # Concept drift (the same applicant now repays differently) shows only in new outcomes,
    # which a model trained on all of history learns too little from.
    # Only the labelled rows of the last this many days, counted back from the newest one, are
    # trained, validated and tested on (at least training.dataset.MIN_WINDOW_ROWS of the
    # newest); unset: all of them.
    training_window_days: float | None = Field(default=None, gt=0, allow_inf_nan=False)
    # A training row's sample weight halves every this many days of age (from the newest
    # labelled row), in fitting, early stopping, tuning and calibration; unset: equal weights.
    training_half_life_days: float | None = Field(default=None, gt=0, allow_inf_nan=False)

    # --- monitoring and feedback (thresholds of the checks: monitoring/thresholds.py) ---
    # An outcome is whether the loan defaulted within this many days of its application.
    performance_window_days: int = Field(default=365, gt=0)
    # Bearer token that /feedback and every other write or admin endpoint require; unset: those
    # endpoints answer 401 to everyone (nothing is writable without a token you chose).
    api_token: SecretStr | None = None
    # Fernet key (cryptography) that encrypts the entity keys kept in the prediction log; unset:
    # a key file in the home, created on first use (tests and the embedded default).
    log_key: SecretStr | None = None
    # Prediction-log rows and labels older than this are deleted by `creditflow forget --expired`.
    retention_days: int = Field(default=3 * 365, gt=0)
    # The service writes its request counts, latency histograms, errors and rejections to our
    # database this often (seconds), off the request path.
    service_stats_interval_s: float = Field(default=10.0, gt=0, allow_inf_nan=False)
    # The service records per-window request statistics (bento/service_stats.py); 0: it does not.
    service_stats: bool = True
    # The prediction log keeps each application as received (entity keys encrypted), which
    # feedback turns into training rows and skew checks rebuild; 0: only the keys' hash and the
    # features (outcomes can still be judged, never trained on).
    log_applications: bool = True
    # Each serving worker asks the registry for a new champion (or shadow) this often (seconds;
    # 0: only on POST /admin/reload). A built bento pins its model and never asks.
    champion_check_s: float = Field(default=10.0, ge=0, allow_inf_nan=False)
    # Share of the applications the model alone sends to review that are approved anyway, to
    # learn how they repay (post-processing/exploration.py); 0: none.
    exploration_share: float = Field(default=0.0, ge=0, le=1, allow_inf_nan=False)
    # The service reads the latest monitoring results (its /metrics gauges) this often (seconds).
    monitoring_gauges_interval_s: float = Field(default=60.0, gt=0, allow_inf_nan=False)

    @cached_property
    def data_dir(self) -> Path:
        """The offline store's sources: one folder of parquet batches per table."""
        return self.home / "data"

    @cached_property
    def raw_dir(self) -> Path:
        """Where `creditflow generate` puts the demo world before ingestion."""
        return self.home / "raw"

    @cached_property
    def feast_dir(self) -> Path:
        return self.home / "feast"

    @cached_property
    def bentoml_home(self) -> Path:
        return self.home / "bentoml"

    @cached_property
    def reports_dir(self) -> Path:
        return self.home / "reports"

    @cached_property
    def profiles_dir(self) -> Path:
        """whylogs profiles of logged traffic, one mergeable file per model and time window."""
        return self.home / "monitoring" / "profiles"

    @cached_property
    def log_key_file(self) -> Path:
        """Where the prediction log's encryption key is kept when CREDITFLOW_LOG_KEY is unset."""
        return self.home / "log_encryption.key"

    @cached_property
    def entity_hash_key_file(self) -> Path:
        """The secret of the entity keys' keyed hash (HMAC)."""
        return self.home / "entity_hash.key"

    @property
    def feature_store_yaml(self) -> Path:
        return PROFILE_YAML[self.profile]

    @property
    def sql_url(self) -> str:
        if self.database_url:
            return self.database_url
        if self.profile == "production":
            return self.pg_url
        return f"sqlite:///{self.home / 'creditflow.db'}"

    def table_dir(self, table: str) -> Path:
        """Folder of one source table's accepted batches, one parquet file per batch."""
        return self.data_dir / table

    def table_glob(self, table: str) -> str:
        """What Feast reads for a table: every committed batch (staging is a subfolder)."""
        return str(self.table_dir(table) / "*.parquet")


def get_settings() -> Settings:
    """Settings from the environment, with the home made absolute."""
    settings = Settings()
    settings.home = settings.home.expanduser().resolve()
    return settings


def environment(settings: Settings | None = None) -> dict[str, str]:
    """The variables that point Feast and BentoML at a home and its profile (for a subprocess,
    or for :func:`export_environment`). Derived from the home and the profile, always, so that
    two homes never mix."""
    settings = settings or get_settings()
    return {
        "CREDITFLOW_HOME": str(settings.home),
        "BENTOML_HOME": str(settings.bentoml_home),
        "FEAST_FS_YAML_FILE_PATH": str(settings.feature_store_yaml),
        # The Feast repo wherever the package is installed: `feast -c "$CREDITFLOW_FEATURE_REPO"`.
        "CREDITFLOW_FEATURE_REPO": str(FEATURE_REPO),
        "CREDITFLOW_PG_URL": settings.pg_url,
        "CREDITFLOW_REDIS_URL": settings.redis_url,
    }


def export_environment(settings: Settings | None = None) -> dict[str, str]:
    """Put the home, the BentoML store and the Feast profile into ``os.environ``.

    Feast's yaml reads ``${CREDITFLOW_HOME}`` and BentoML reads ``BENTOML_HOME`` once, when
    its stores are first used, so this runs before either is.
    """
    values = environment(settings)
    os.environ.update(values)
    return values
