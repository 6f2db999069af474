"""What each training run records in MLflow besides the model.

Parameters and headline metrics are logged by the main job; this module adds a
fingerprint of the input tables, the feature list, the code version, the
metrics of every fold, and plots of calibration and of each fold's ROC-AUC.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from pathlib import Path
from typing import Any

import pandas as pd

from features.build import FeatureFrame
from sources.contract import InputTables

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
INPUT_FINGERPRINT_TAG = "input_fingerprint"
"""Run tag with the combined SHA-256 of the input tables (:func:`table_fingerprints`)."""


def table_fingerprints(tables: InputTables) -> dict[str, str]:
    """Return a SHA-256 over each contract table's rows and column names."""
    fingerprints = {}
    for name in (
        "learners",
        "units",
        "enrolments",
        "attributes",
        "assessments",
        "attendance",
    ):
        table: pd.DataFrame = getattr(tables, name)
        digest = hashlib.sha256(",".join(map(str, table.columns)).encode())
        if len(table):
            hashed = pd.util.hash_pandas_object(table, index=False).to_numpy()
            digest.update(hashed.tobytes())
        fingerprints[name] = digest.hexdigest()
    combined = hashlib.sha256("".join(fingerprints.values()).encode()).hexdigest()
    return fingerprints | {"all": combined}


def frame_fingerprint(data: pd.DataFrame) -> str:
    """Return a SHA-256 over the rows and column names of a feature frame.

    The main job stores it with the version as ``training_data_sha256``, and
    ``ajoissa audit`` compares it with the frame it rebuilds.
    """
    digest = hashlib.sha256(",".join(map(str, data.columns)).encode("utf-8"))
    digest.update(pd.util.hash_pandas_object(data, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def code_version() -> str:
    """Return the git commit of the code (with ``-dirty`` for local changes), or ``unknown``."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def _fold_metrics(evaluation: dict[str, Any]) -> dict[str, float]:
    flat = {}
    for fold in evaluation["folds"]:
        for model, values in fold["overall"].items():
            for name, value in values.items():
                if isinstance(value, float):
                    flat[f"fold.{fold['name']}.{model}.{name}"] = value
    return flat


def _plot_calibration(evaluation: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fold = evaluation["folds"][-1]
    figure, axis = plt.subplots(figsize=(5, 5))
    axis.plot([0, 1], [0, 1], color="grey", linestyle="--", label="perfect")
    for model, curve in fold["calibration_curve"].items():
        axis.plot(
            [c["mean_predicted"] for c in curve],
            [c["observed_rate"] for c in curve],
            marker="o",
            label=model,
        )
    axis.set_xlabel("mean predicted probability")
    axis.set_ylabel("observed withdrawal rate")
    axis.set_title(f"Calibration, fold {fold['name']}")
    axis.legend()
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def _plot_folds(evaluation: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4))
    names = [fold["name"] for fold in evaluation["folds"]]
    models = list(evaluation["folds"][-1]["overall"])
    width = 0.8 / max(len(models), 1)
    for i, model in enumerate(models):
        values = [
            fold["overall"].get(model, {}).get("roc_auc") or 0.0
            for fold in evaluation["folds"]
        ]
        axis.bar([j + i * width for j in range(len(names))], values, width, label=model)
    axis.set_xticks(
        [j + 0.4 - width / 2 for j in range(len(names))], names, rotation=20
    )
    axis.set_ylim(0.4, 1.0)
    axis.set_ylabel("ROC-AUC")
    axis.legend(fontsize="small", ncol=2)
    figure.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(figure)


def log_run_details(
    tables: InputTables, frame: FeatureFrame, evaluation: dict[str, Any], out_dir: Path
) -> dict[str, Any]:
    """Log fingerprints, features, code version, fold metrics and plots to the active run."""
    import mlflow

    fingerprints = table_fingerprints(tables)
    version = code_version()
    mlflow.set_tags(
        {"code_version": version, INPUT_FINGERPRINT_TAG: fingerprints["all"]}
    )
    mlflow.log_dict(
        {"fingerprints": fingerprints, "code_version": version}, "inputs.json"
    )
    mlflow.log_dict(
        {"features": frame.feature_names, "categorical": frame.categorical},
        "features.json",
    )
    mlflow.log_dict(json.loads(json.dumps(evaluation, default=str)), "evaluation.json")
    mlflow.log_metrics(_fold_metrics(evaluation))
    plots = out_dir / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    _plot_calibration(evaluation, plots / "calibration.png")
    _plot_folds(evaluation, plots / "roc_auc_by_fold.png")
    mlflow.log_artifacts(str(plots), "plots")
    logger.info("logged run details (code version %s)", version)
    return {"fingerprints": fingerprints, "code_version": version}
