"""Reason codes: the features that push one learner's score up or down most.

Contributions are TreeSHAP values in log-odds, the unit of LightGBM's raw score:
for each row they sum, with the base value, to the raw score. LightGBM's own
``pred_contrib`` computes the same values as ``shap.TreeExplainer`` for these
models and avoids importing shap in the serving process.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
import pandas as pd

from models.reason_text import (
    LANGUAGES,
    reason_group,
    reason_sentence,
    unnamed_features,
)
from models.spec import FeatureSpec


def contributions(
    model: lgb.LGBMClassifier,
    spec: FeatureSpec,
    X: pd.DataFrame | np.ndarray,
    num_threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Return per-row SHAP contributions (rows by features) and base values (log-odds).

    ``X`` is a frame with the spec's columns or a matrix from
    :meth:`FeatureSpec.encode`. ``num_threads`` overrides the model's LightGBM
    thread count for this call.
    """
    options = {} if num_threads is None else {"num_threads": num_threads}
    data = X if isinstance(X, np.ndarray) else spec.conform(X)
    raw = model.booster_.predict(data, pred_contrib=True, **options)
    return raw[:, :-1], raw[:, -1]


def shap_contributions(
    model: lgb.LGBMClassifier, spec: FeatureSpec, X: pd.DataFrame
) -> tuple[np.ndarray, float]:
    """Return contributions from ``shap.TreeExplainer`` (path-dependent mode)."""
    import warnings

    import shap

    explainer = shap.TreeExplainer(model.booster_)
    with warnings.catch_warnings():
        # shap 0.51 warns on every call that its output format for LightGBM
        # binary classifiers changed; the list case is handled below.
        warnings.filterwarnings("ignore", message="LightGBM binary classifier")
        values = explainer.shap_values(spec.conform(X))
    if isinstance(values, list):
        values = values[1]
    base = explainer.expected_value
    base = float(np.ravel(base)[-1])
    return np.asarray(values), base


def reason_codes(
    values: np.ndarray,
    X: pd.DataFrame | Mapping[str, Sequence[Any]],
    feature_names: list[str],
    top_n: int = 3,
    *,
    sentences: bool = False,
) -> list[list[dict[str, Any]]]:
    """Return the ``top_n`` features with the largest absolute contribution per row.

    Each reason has the feature, its value for the row (from ``X``, a frame or
    a mapping of feature name to values by row), the contribution in log-odds
    and a direction: ``raises`` or ``lowers`` the risk. Features that
    :func:`models.reason_text.unnamed_features` lists (sensitive attributes,
    their proxies and context features) are never reasons; the next feature
    takes their place. Of the features in one ``same_reason`` group of
    ``models/reason_texts.yaml``, only the one with the largest absolute
    contribution is named, and the next feature takes the others' places. With ``sentences`` each reason also has ``sentences``,
    one plain-language sentence per language of :mod:`models.reason_text`.
    """
    if isinstance(X, pd.DataFrame):
        X = {name: X[name].tolist() for name in feature_names}
    hidden = unnamed_features()
    allowed = np.array([name not in hidden for name in feature_names])
    order = np.argsort(-np.abs(values), axis=1, kind="stable")
    reasons = []
    groups = [reason_group(name) for name in feature_names]
    for row, columns in enumerate(order):
        row_reasons = []
        named_groups = set()
        for column in columns[allowed[columns]]:
            contribution = float(values[row, column])
            if contribution == 0.0 or len(row_reasons) == top_n:
                break
            if groups[column] in named_groups:
                continue
            named_groups.add(groups[column])
            name = feature_names[column]
            value = X[name][row]
            direction = "raises" if contribution > 0 else "lowers"
            reason = {
                "feature": name,
                "value": None if pd.isna(value) else _plain(value),
                "contribution_log_odds": round(contribution, 4),
                "direction": direction,
            }
            if sentences:
                reason["sentences"] = {
                    language: reason_sentence(name, value, direction, language)
                    for language in LANGUAGES
                }
            row_reasons.append(reason)
        reasons.append(row_reasons)
    return reasons


def _plain(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    return value
