"""Fixtures for the serving tests: a small real model in a temporary store."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from features.build import asof_points_by_offset, build_features
from models.risk import fit_risk_model
from models.spec import FeatureSpec
from models.store import LoadedModel, load_registered
from sources.oulad import load_oulad

REPO_ROOT = Path(__file__).resolve().parents[2]
MODEL_NAME = "serving-test-model"
SAMPLE_ROWS = 3000


@dataclass(frozen=True)
class TrainedModel:
    """A model registered in a temporary store, with rows it was not trained on."""

    loaded: LoadedModel
    holdout: pd.DataFrame
    """Feature rows (spec columns only, training dtypes) for scoring checks."""
    holdout_records: list[dict[str, object]]
    """The ``holdout`` rows as JSON-compatible records, with null for missing."""
    home: Path

    @property
    def spec(self) -> FeatureSpec:
        return self.loaded.spec


@pytest.fixture(scope="package")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TrainedModel]:
    """Fit and register a small OULAD model in a temporary AJOISSA_HOME."""
    import mlflow

    from training.registry import ensure_experiment, log_and_register

    home = tmp_path_factory.mktemp("ajoissa-home")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AJOISSA_HOME", str(home))
        patch.delenv("MLFLOW_TRACKING_URI", raising=False)
        patch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        patch.setenv("BENTOML_DO_NOT_TRACK", "true")
        patch.setenv("BENTOML_HOME", str(tmp_path_factory.mktemp("bentoml-home")))

        tables = load_oulad(REPO_ROOT / "ajoissa" / "data" / "oulad").validated()
        features = build_features(tables, asof_points_by_offset(tables.units, [60]))
        rows = features.data.sample(n=2 * SAMPLE_ROWS, random_state=0)
        train, holdout = rows.iloc[:SAMPLE_ROWS], rows.iloc[SAMPLE_ROWS:]
        model, spec = fit_risk_model(
            train[features.feature_names],
            train["withdraws_after"].to_numpy(dtype=int),
            params={"n_estimators": 20},
        )
        with mlflow.start_run(experiment_id=ensure_experiment()):
            log_and_register(model, spec, train[features.feature_names], MODEL_NAME)
        loaded = load_registered(MODEL_NAME)
        holdout_frame = holdout[features.feature_names].reset_index(drop=True)
        yield TrainedModel(
            loaded=loaded,
            holdout=holdout_frame,
            holdout_records=_to_records(holdout_frame),
            home=home,
        )


def _to_records(frame: pd.DataFrame) -> list[dict[str, object]]:
    """Convert feature rows to JSON-compatible records, with null for missing."""
    records = []
    for row in frame.to_dict("records"):
        records.append(
            {
                key: None if _is_missing(value) else _plain(value)
                for key, value in row.items()
            }
        )
    return records


def _is_missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and np.isnan(value))


def _plain(value: object) -> object:
    if isinstance(value, np.generic):
        return value.item()
    return value
