"""Model quality on the bundled public data, next to the baselines and the targets.

Run from the repository root (``-m``, so that ``benchmarks/features.py`` does
not hide the ``features`` package)::

    PYTHONPATH=. python -m benchmarks.model_quality --trials 10 --out model-quality.json

Set-ups:

- OULAD withdrawal per as-of day (30, 60, 90, 120 days after the presentation
  starts): the 2013 presentations train (2013J chooses the hyperparameters of
  boosters fitted on 2013B, then the booster is refitted on both), the 2014
  presentations test. Learners with 2013 enrolments are dropped from the test
  rows.
- OULAD inside the training cohorts: the design choices measured on 2013B
  against 2013J only (no 2014 row is read), with boosting rounds chosen on a
  random 20 % of the 2013B learners.
- UCI dropout, binary (Dropout against Graduate and Enrolled): stratified 5-fold
  cross-validation grouped by learner; the data has no time axis. Each fold
  chooses its hyperparameters by cross-validation inside its training rows.
- UCI dropout inside the folds (opt-in, ``--only uci_dropout_inside_folds``):
  the mapping with and without its derived attributes, compared by 5-fold
  cross-validation inside each outer training fold.
- UCI dropout, three classes (Dropout, Enrolled, Graduate): the same folds, a
  multiclass LightGBM and a multinomial logistic regression on the same
  features; macro one-vs-rest ROC-AUC and accuracy.
- UCI student performance, pass or fail (G3 >= 10), Mathematics and Portuguese,
  with G1 and G2 (setup A), G1 only (B) and neither (C), through the bundled
  mapping files; accuracy at probability 0.5 next to ROC-AUC.

Targets: OULAD at day 60 at least 0.04 ROC-AUC above the logistic regression on
the same features, and a higher precision at 10 % than every baseline on every
as-of day; UCI dropout binary ROC-AUC of at least 0.93. The script prints each
target as met or not met; it measures, it does not tune towards the test rows.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ajoissa.catalog import SOURCES
from features.build import asof_points_by_offset, build_features
from training.results import legacy_metrics
from training.validate import validate_stratified, validate_temporal, with_label_window

logger = logging.getLogger(__name__)


def run_oulad(trials: int, seed: int) -> dict[str, Any]:
    entry = SOURCES["oulad"]
    tables = entry.load(entry.default_data).validated()
    offsets = [30, 60, 90, 120]
    frame = build_features(tables, asof_points_by_offset(tables.units, offsets))
    frame = with_label_window(frame, tables.enrolments, None)
    validation = validate_temporal(
        frame, tables.units, ["2014-01-01"], trials=trials, seed=seed
    )
    metrics = legacy_metrics(
        frame, validation.final, {d: f"day_{d}" for d in offsets}, 0.10
    )
    day60 = metrics["day_60"]
    gain = day60["model"]["roc_auc"] - day60["logistic"]["roc_auc"]
    precision_wins = {
        day: all(
            values["model"]["precision_at_10pct"] > other["precision_at_10pct"]
            for name, other in values.items()
            if name != "model"
        )
        for day, values in metrics.items()
    }
    return {
        "details": validation.final.details,
        "not_applicable": validation.final.not_applicable,
        "metrics": metrics,
        "targets": {
            "day_60_roc_auc_gain_over_logistic": gain,
            "day_60_roc_auc_gain_met": gain >= 0.04,
            "precision_at_10pct_above_every_baseline": precision_wins,
            "precision_at_10pct_met": all(precision_wins.values()),
        },
    }


def run_uci_binary(trials: int, seed: int) -> dict[str, Any]:
    entry = SOURCES["uci-dropout"]
    tables = entry.load(entry.default_data).validated()
    config = entry.config()
    frame = build_features(
        tables, asof_points_by_offset(tables.units, config.asof_offsets_days)
    )
    frame = with_label_window(frame, tables.enrolments, None)
    validation = validate_stratified(frame, folds=5, trials=trials, seed=seed)
    metrics = legacy_metrics(frame, validation.final, config.asof_labels, 0.10)
    auc = metrics["snapshot"]["model"]["roc_auc"]
    return {
        "details": validation.final.details,
        "not_applicable": validation.final.not_applicable,
        "metrics": metrics,
        "targets": {"roc_auc": auc, "roc_auc_met": auc >= 0.93},
    }


def _training_cohort_rows(data: Any) -> tuple[Any, Any]:
    """Return masks of the 2013B rows and of the 2013J rows of learners new in 2013J."""
    fit = (data["cohort"] == "2013B").to_numpy()
    seen = data["learner_id"].isin(data.loc[fit, "learner_id"]).to_numpy()
    valid = (data["cohort"] == "2013J").to_numpy() & ~seen
    return fit, valid


INSIDE_TRAINING_VARIANTS: dict[str, dict[str, Any]] = {
    "booster, no constraints, share_submitted missing when nothing is due": {
        "params": {"monotone_constraints": []},
        "share_submitted_missing": True,
    },
    "booster, no constraints": {"params": {"monotone_constraints": []}},
    "booster, monotone constraints (default)": {"params": {}},
    "booster, monotone constraints, stronger regularisation": {
        "params": {
            "learning_rate": 0.02,
            "num_leaves": 7,
            "min_child_samples": 400,
            "reg_lambda": 10.0,
        }
    },
}
"""Design choices compared inside the OULAD training cohorts, with default
hyperparameters otherwise. An empty ``monotone_constraints`` list turns the
constraints off."""


def run_oulad_inside_training(seed: int) -> dict[str, Any]:
    """Compare booster design choices on 2013B -> 2013J; no 2014 row is used."""
    import numpy as np

    from models.baselines import LogisticBaseline
    from models.risk import choose_rounds, fit_risk_model, predict_risk
    from training.evaluate import evaluate_scores
    from training.validate import _random_validation

    entry = SOURCES["oulad"]
    tables = entry.load(entry.default_data).validated()
    frame = build_features(
        tables, asof_points_by_offset(tables.units, [30, 60, 90, 120])
    )
    frame = with_label_window(frame, tables.enrolments, None)
    data, y = frame.data, frame.y
    fit, valid = _training_cohort_rows(data)
    # Boosting rounds come from a random 20 % of the 2013B learners, so 2013J
    # only scores the variants.
    inner = _random_validation(data, fit, y, seed)
    days = data["asof_offset_days"].to_numpy()

    def table(scores: Any) -> dict[str, Any]:
        out = {}
        for day in (30, 60, 90, 120):
            at = days[valid] == day
            values = evaluate_scores(y[valid][at], scores[at], 0.10)
            out[f"day_{day}"] = {
                "roc_auc": values["roc_auc"],
                "precision_at_10pct": values["precision_at_10pct"],
            }
        return out

    results: dict[str, Any] = {}
    logistic = LogisticBaseline(frame.categorical).fit(frame.X[fit], y[fit])
    results["logistic"] = table(logistic.predict_proba(frame.X[valid])[:, 1])
    for name, variant in INSIDE_TRAINING_VARIANTS.items():
        X = frame.X.copy()
        if variant.get("share_submitted_missing"):
            X.loc[X["assessments_due"] == 0, "share_submitted"] = np.nan
        params = dict(variant["params"]) | {"random_state": seed}
        if params.get("monotone_constraints") == []:
            params["monotone_constraints"] = [0] * X.shape[1]
        rounds = choose_rounds(
            X[fit & ~inner], y[fit & ~inner], X[inner], y[inner], params
        )
        model, spec = fit_risk_model(X[fit], y[fit], params | {"n_estimators": rounds})
        results[name] = table(predict_risk(model, spec, X[valid]))
        results[name]["boosting_rounds"] = rounds
    return {
        "fit": "2013B",
        "scored": "2013J, learners new in 2013J",
        "rounds_chosen_on": "a random 20 % of the 2013B learners",
        "metrics": results,
    }


def run_uci_inside_folds(seed: int) -> dict[str, Any]:
    """Compare the UCI mapping with and without its derived attributes, nested.

    The outer folds are those of the binary set-up. Inside each outer fold's
    training rows, a 5-fold cross-validation grouped by learner scores the
    booster (default hyperparameters, rounds chosen on a random 20 % of the
    inner training learners) and the logistic regression, so no outer test row
    takes part in the comparison.
    """
    import numpy as np
    from sklearn.model_selection import StratifiedGroupKFold

    from models.baselines import LogisticBaseline
    from models.risk import choose_rounds, fit_risk_model, predict_risk
    from sources.uci_dropout import DERIVED_ATTRIBUTES
    from training.metrics import roc_auc
    from training.validate import _random_validation

    entry = SOURCES["uci-dropout"]
    tables = entry.load(entry.default_data).validated()
    config = entry.config()
    frame = build_features(
        tables, asof_points_by_offset(tables.units, config.asof_offsets_days)
    )
    frame = with_label_window(frame, tables.enrolments, None)
    derived = [f"attr_{name}" for name in DERIVED_ATTRIBUTES]
    variants = {
        "semester attributes only": [
            c for c in frame.feature_names if c not in derived
        ],
        "with the derived attributes": frame.feature_names,
    }
    data, y = frame.data, frame.y
    groups = data["learner_id"].to_numpy()
    outer = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
    results: dict[str, Any] = {name: {"model": [], "logistic": []} for name in variants}
    for train_rows, _ in outer.split(data, y, groups):
        inside = data.iloc[train_rows].reset_index(drop=True)
        y_inside = y[train_rows]
        inner = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed + 1)
        splits = list(inner.split(inside, y_inside, groups[train_rows]))
        for name, columns in variants.items():
            X = inside[columns]
            categorical = [c for c in frame.categorical if c in columns]
            booster_p = np.zeros(len(X))
            logistic_p = np.zeros(len(X))
            for fit_rows, held_rows in splits:
                fit = np.zeros(len(X), dtype=bool)
                fit[fit_rows] = True
                stop = _random_validation(inside, fit, y_inside, seed)
                rounds = choose_rounds(
                    X[fit & ~stop], y_inside[fit & ~stop], X[stop], y_inside[stop]
                )
                model, spec = fit_risk_model(
                    X[fit], y_inside[fit], {"n_estimators": rounds}
                )
                booster_p[held_rows] = predict_risk(model, spec, X.iloc[held_rows])
                logistic = LogisticBaseline(categorical).fit(X[fit], y_inside[fit])
                logistic_p[held_rows] = logistic.predict_proba(X.iloc[held_rows])[:, 1]
            results[name]["model"].append(roc_auc(y_inside, booster_p))
            results[name]["logistic"].append(roc_auc(y_inside, logistic_p))
    return {"roc_auc_per_outer_fold": results}


def run_uci_three_class(seed: int) -> dict[str, Any]:
    """Cross-validate a multiclass booster and a multinomial logistic regression."""
    import lightgbm as lgb
    import numpy as np
    import pandas as pd
    from sklearn.metrics import accuracy_score, roc_auc_score
    from sklearn.model_selection import StratifiedGroupKFold

    from models.baselines import LogisticBaseline
    from models.risk import DEFAULT_PARAMS, EARLY_STOPPING_ROUNDS, MAX_ROUNDS
    from models.spec import FeatureSpec
    from sources.uci_dropout import TARGET
    from training.validate import _random_validation

    entry = SOURCES["uci-dropout"]
    path = entry.default_data / "data.csv"
    tables = entry.load(entry.default_data).validated()
    config = entry.config()
    frame = build_features(
        tables, asof_points_by_offset(tables.units, config.asof_offsets_days)
    )
    # learner_id is uci-<n> for the 1-based data row n (sources.uci_dropout).
    target = pd.read_csv(path, sep=";", encoding="utf-8-sig", usecols=[TARGET])[TARGET]
    classes = sorted(target.unique())
    row = frame.data["learner_id"].str.removeprefix("uci-").astype(int) - 1
    y = target.iloc[row.to_numpy()].map({c: i for i, c in enumerate(classes)})
    y = y.to_numpy(dtype=int)
    X, groups = frame.X, frame.data["learner_id"].to_numpy()

    booster_p = np.zeros((len(y), len(classes)))
    logistic_p = np.zeros((len(y), len(classes)))
    rounds_used = []
    splitter = StratifiedGroupKFold(n_splits=5, shuffle=True, random_state=seed)
    params = {k: v for k, v in DEFAULT_PARAMS.items() if k != "n_estimators"} | {
        "objective": "multiclass",
        "random_state": seed,
    }
    for train_rows, test_rows in splitter.split(X, y, groups):
        train = np.zeros(len(y), dtype=bool)
        train[train_rows] = True
        inner = _random_validation(frame.data, train, y, seed)
        spec = FeatureSpec.from_frame(X[train])
        stopper = lgb.LGBMClassifier(**params, n_estimators=MAX_ROUNDS)
        stopper.fit(
            spec.conform(X[train & ~inner]),
            y[train & ~inner],
            eval_X=(spec.conform(X[inner]),),
            eval_y=(y[inner],),
            callbacks=[lgb.early_stopping(EARLY_STOPPING_ROUNDS, verbose=False)],
        )
        rounds = int(stopper.best_iteration_ or MAX_ROUNDS)
        rounds_used.append(rounds)
        booster = lgb.LGBMClassifier(**params, n_estimators=rounds)
        booster.fit(spec.conform(X[train]), y[train])
        booster_p[test_rows] = booster.predict_proba(spec.conform(X.iloc[test_rows]))
        logistic = LogisticBaseline(frame.categorical).fit(X[train], y[train])
        logistic_p[test_rows] = logistic.predict_proba(X.iloc[test_rows])

    def scores(p: Any) -> dict[str, float]:
        return {
            "macro_roc_auc_ovr": float(
                roc_auc_score(y, p, multi_class="ovr", average="macro")
            ),
            "accuracy": float(accuracy_score(y, p.argmax(axis=1))),
        }

    return {
        "classes": classes,
        "class_counts": {c: int((y == i).sum()) for i, c in enumerate(classes)},
        "boosting_rounds_per_fold": rounds_used,
        "metrics": {"model": scores(booster_p), "logistic": scores(logistic_p)},
    }


STUDENT_MAPPINGS = [
    f"uci-student-{subject}-{setup}" for subject in ("mat", "por") for setup in "abc"
]
"""Mapping files under ajoissa/mappings: Mathematics and Portuguese, setups A, B, C."""


def run_student_performance(trials: int, seed: int) -> dict[str, Any]:
    """Cross-validate every student-performance setup through its mapping file."""
    import numpy as np
    from sklearn.metrics import accuracy_score, roc_auc_score

    from ajoissa.catalog import BUNDLED_DATA

    entry = SOURCES["table"]
    results: dict[str, Any] = {}
    for name in STUDENT_MAPPINGS:
        mapping = BUNDLED_DATA.parent / "mappings" / f"{name}.yaml"
        tables = entry.load(mapping).validated()
        config = entry.run_config(mapping)
        frame = build_features(
            tables, asof_points_by_offset(tables.units, config.asof_offsets_days)
        )
        frame = with_label_window(frame, tables.enrolments, None)
        validation = validate_stratified(
            frame, folds=config.folds, trials=trials, seed=seed
        )
        fold = validation.final
        y = frame.y[fold.rows]
        # The outcome is failing (G3 < 10), so a pupil is predicted to pass when
        # the probability of failing is below one half.
        results[name] = {
            "rows": len(y),
            "failing_share": float(y.mean()),
            "features": len(frame.feature_names),
            "metrics": {
                model: {
                    "accuracy": float(
                        accuracy_score(y, fold.scores[model].probability >= 0.5)
                    ),
                    "roc_auc": float(roc_auc_score(y, fold.scores[model].probability)),
                }
                for model in ("model", "logistic")
            },
            "majority_class_accuracy": float(max(np.mean(y), 1 - np.mean(y))),
        }
    return results


def _machine() -> dict[str, Any]:
    import os
    import platform

    import lightgbm

    return {
        "cpus": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "lightgbm": lightgbm.__version__,
        "load_average_start": [round(v, 2) for v in os.getloadavg()],
    }


def _print_headline(name: str, result: dict[str, Any]) -> None:
    for asof, by_model in result["metrics"].items():
        for model, values in by_model.items():
            print(
                f"{asof:9} {model:14} ROC-AUC {values['roc_auc']:.3f}  "
                f"PR-AUC {values['pr_auc']:.3f}  "
                f"P@10% {values['precision_at_10pct']:.3f}  "
                f"Brier {values['brier']:.4f}"
            )
    print("targets:", json.dumps(result["targets"]))


def _print_inside_training(result: dict[str, Any]) -> None:
    for model, by_day in result["metrics"].items():
        cells = [
            f"{values['roc_auc']:.3f}/{values['precision_at_10pct']:.3f}"
            for day, values in by_day.items()
            if day.startswith("day_")
        ]
        print(f"{model[:60]:60} " + "  ".join(cells))


def _print_three_class(result: dict[str, Any]) -> None:
    print("classes:", json.dumps(result["class_counts"]))
    for model, values in result["metrics"].items():
        print(
            f"{model:9} macro ROC-AUC (one-vs-rest) {values['macro_roc_auc_ovr']:.3f}  "
            f"accuracy {values['accuracy']:.3f}"
        )


def _print_inside_folds(result: dict[str, Any]) -> None:
    for name, by_model in result["roc_auc_per_outer_fold"].items():
        for model, values in by_model.items():
            cells = " ".join(f"{v:.4f}" for v in values)
            print(f"{name:28} {model:9} mean {sum(values) / len(values):.4f}  {cells}")


def _print_student(result: dict[str, Any]) -> None:
    for name, values in result.items():
        cells = "  ".join(
            f"{model} accuracy {m['accuracy']:.3f} ROC-AUC {m['roc_auc']:.3f}"
            for model, m in values["metrics"].items()
        )
        print(
            f"{name:20} {cells}  majority class {values['majority_class_accuracy']:.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--trials", type=int, default=15, help="Optuna trials per fold."
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="Seed for every random step."
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("model-quality.json"),
        help="JSON file for the measured figures.",
    )
    parser.add_argument(
        "--only",
        nargs="+",
        choices=[name for name, _, _ in SETUPS],
        help="Run only these set-ups (default: all but the opt-in "
        + ", ".join(OPT_IN_SETUPS)
        + ").",
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    import os

    results: dict[str, Any] = {
        "trials": args.trials,
        "seed": args.seed,
        "machine": _machine(),
    }
    print("machine:", json.dumps(results["machine"]))
    for name, run, show in SETUPS:
        if args.only and name not in args.only:
            continue
        if not args.only and name in OPT_IN_SETUPS:
            continue
        started = time.perf_counter()
        results[name] = run(args.trials, args.seed)
        results[name]["seconds"] = round(time.perf_counter() - started, 1)
        results[name]["load_average_end"] = [round(v, 2) for v in os.getloadavg()]
        print(
            f"== {name} ({results[name]['seconds']} s, load average "
            f"{results[name]['load_average_end'][0]})"
        )
        show(name, results[name])
    args.out.write_text(
        json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8"
    )


SETUPS: list[tuple[str, Callable[[int, int], dict[str, Any]], Callable[..., None]]] = [
    ("oulad", run_oulad, _print_headline),
    (
        "oulad_inside_training",
        lambda trials, seed: run_oulad_inside_training(seed),
        lambda name, result: _print_inside_training(result),
    ),
    ("uci_dropout_binary", run_uci_binary, _print_headline),
    (
        "uci_dropout_inside_folds",
        lambda trials, seed: run_uci_inside_folds(seed),
        lambda name, result: _print_inside_folds(result),
    ),
    (
        "uci_dropout_three_class",
        lambda trials, seed: run_uci_three_class(seed),
        lambda name, result: _print_three_class(result),
    ),
    (
        "uci_student_performance",
        run_student_performance,
        lambda name, result: _print_student(
            {
                k: v
                for k, v in result.items()
                if k not in ("seconds", "load_average_end")
            }
        ),
    ),
]
"""Each set-up's name, the function that measures it (trials, seed) and its printer."""

OPT_IN_SETUPS = ("uci_dropout_inside_folds",)
"""Set-ups run only when ``--only`` names them: the nested comparison behind a
design choice, which takes several times as long as the rest of the table."""


if __name__ == "__main__":
    main()
