"""Log a trained model to MLflow, register it and set its alias."""

from __future__ import annotations

import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import lightgbm as lgb
import pandas as pd
import sklearn

from models.calibration import Calibration
from models.spec import FeatureSpec
from models.store import (
    ARTIFACT_DIGEST_TAG,
    ARTIFACT_FILES_TAG,
    CHAMPION,
    EXPERIMENT_NAME,
    artifact_digest,
    artifact_file_digests,
    artifact_root,
    configure_mlflow,
)

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RegisteredVersion:
    name: str
    version: str
    run_id: str

    @property
    def uri(self) -> str:
        return f"models:/{self.name}/{self.version}"


def ensure_experiment(name: str = EXPERIMENT_NAME) -> str:
    """Return the id of experiment ``name``, creating it with the store's artifact root."""
    import mlflow
    from mlflow.exceptions import MlflowException

    configure_mlflow()
    experiment = mlflow.get_experiment_by_name(name)
    if experiment is not None:
        return experiment.experiment_id
    try:
        return mlflow.create_experiment(name, artifact_location=artifact_root())
    except MlflowException:
        # Another process created it between the lookup and the create.
        experiment = mlflow.get_experiment_by_name(name)
        if experiment is None:
            raise
        return experiment.experiment_id


def log_and_register(
    model: lgb.LGBMClassifier,
    spec: FeatureSpec,
    example: pd.DataFrame,
    model_name: str,
    alias: str | None = CHAMPION,
    tags: dict[str, str] | None = None,
    calibration: Calibration | None = None,
) -> RegisteredVersion:
    """Log ``model`` in the active MLflow run, register a new version, set ``alias``.

    With ``alias`` None the version is registered without an alias, so that a
    caller can set one only after its remaining steps have succeeded.

    The version gets the ``ARTIFACT_DIGEST_TAG`` tag with the digest of its stored
    artifact files, which :func:`models.store.load_registered` checks, and the
    ``ARTIFACT_FILES_TAG`` tag with each file's digest, which names the changed
    files when that check fails.

    The feature spec and the calibration go into the model's metadata so that
    a server can validate records, restore categories and calibrate
    probabilities without the training code. The signature is on the raw
    feature record (categories as strings), with the calibrated probability
    as output when a calibration is given.
    """
    import mlflow
    from mlflow.models import infer_signature

    run = mlflow.active_run()
    if run is None:
        raise RuntimeError("log_and_register needs an active MLflow run")
    conformed = spec.conform(example)
    output = model.predict_proba(conformed)[:, 1]
    if calibration is not None:
        output = calibration.apply(output)
    signature = infer_signature(conformed, output)
    metadata: dict[str, object] = {"feature_spec": spec.to_dict()}
    if calibration is not None:
        metadata["calibration"] = calibration.to_dict()
    info = mlflow.lightgbm.log_model(
        model,
        name="model",
        signature=signature,
        # No input example: its rows would be pupils' feature values, stored
        # with every version for anyone who can read the registry.
        registered_model_name=model_name,
        metadata=metadata,
        # The requirements are listed, so MLflow does not infer them, and with
        # no input example there is no serving input to validate. Ajoissa loads
        # the native LightGBM flavour, whose round trip the tests check.
        pip_requirements=[
            f"lightgbm=={lgb.__version__}",
            f"pandas=={pd.__version__}",
            f"scikit-learn=={sklearn.__version__}",
        ],
        validate_serving_input=False,
    )
    version = str(info.registered_model_version)
    client = mlflow.MlflowClient()
    try:
        for key, value in (tags or {}).items():
            client.set_model_version_tag(model_name, version, key, value)
        # The digest is taken from the stored copy, as a server will download it.
        with tempfile.TemporaryDirectory(prefix="ajoissa-register-") as tmp:
            stored = mlflow.artifacts.download_artifacts(
                f"models:/{model_name}/{version}", dst_path=tmp
            )
            digest = artifact_digest(Path(stored))
            file_digests = artifact_file_digests(Path(stored))
        client.set_model_version_tag(
            model_name, version, ARTIFACT_FILES_TAG, json.dumps(file_digests)
        )
        client.set_model_version_tag(model_name, version, ARTIFACT_DIGEST_TAG, digest)
        if alias is not None:
            client.set_registered_model_alias(model_name, alias, version)
    except BaseException:
        # Ctrl+C or an error here would leave a version without its tags or
        # digest, which the registry would still list.
        logger.warning(
            "registration of %s version %s failed or was interrupted; deleting it",
            model_name,
            version,
        )
        try:
            client.delete_model_version(model_name, version)
        except Exception:
            logger.exception("could not delete %s version %s", model_name, version)
        raise
    logger.info("registered %s version %s (alias %s)", model_name, version, alias)
    return RegisteredVersion(name=model_name, version=version, run_id=run.info.run_id)
