"""The built-in sources: how to load each one and how to run the main job on it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sources.contract import InputTables
from training.run import RunConfig

BUNDLED_DATA = Path(__file__).parent / "data"


@dataclass(frozen=True)
class SourceEntry:
    """How to load one source and which run settings it takes.

    ``config`` gives fixed settings. A source whose settings depend on its input
    (the mapped table) sets ``configure`` instead, which takes the data path.
    """

    name: str
    description: str
    default_data: Path | None
    load: Callable[[Path], InputTables]
    config: Callable[[], RunConfig] | None = None
    configure: Callable[[Path], RunConfig] | None = None

    def run_config(self, data: Path) -> RunConfig:
        """Return the run settings for the data at ``data``."""
        if self.configure is not None:
            return self.configure(data)
        if self.config is None:
            raise ValueError(f"source {self.name} defines no run settings")
        return self.config()


def _load_oulad(path: Path) -> InputTables:
    from sources.oulad import load_oulad

    return load_oulad(path)


def _oulad_config() -> RunConfig:
    offsets = [30, 60, 90, 120]
    return RunConfig(
        source="oulad",
        asof_offsets_days=offsets,
        asof_labels={d: f"day_{d}" for d in offsets},
        validation="temporal",
        # The latest fold trains on the 2013 presentations and tests on the 2014
        # ones; the earlier fold trains on 2013B and tests on the later ones.
        temporal_cutoff="2014-01-01",
        earlier_cutoffs=["2013-07-01"],
    )


def _load_records(path: Path) -> InputTables:
    from sources.errors import InputDataError, Problem
    from sources.school.mapping import to_input_tables
    from sources.school.records import read_records

    if not path.is_dir():
        raise InputDataError(
            [
                Problem(
                    str(path.resolve()),
                    "export",
                    "*",
                    None,
                    None,
                    "no such folder; give the folder of the school platform's "
                    "export with --data DIR",
                )
            ]
        )
    # An export may bring its own mark-code table; otherwise the example one applies.
    records = read_records(path)
    return to_input_tables(records, origin=str(path))


RECORDS_ASOF = {61: "oct_1", 122: "dec_1", 184: "feb_1"}
"""As-of offsets from the school year's start on 1 August: 1 October, 1 December
and 1 February in every year, leap or not."""


def _records_config() -> RunConfig:
    from features.labels import LabelRule
    from training.run import LATEST_COHORT

    return RunConfig(
        source="records",
        asof_offsets_days=list(RECORDS_ASOF),
        asof_labels=dict(RECORDS_ASOF),
        validation="temporal",
        # The latest school year tests the model; earlier years train it.
        temporal_cutoff=LATEST_COHORT,
        disjoint_learners=False,
        learner_features=True,
        label_rule=LabelRule(),
    )


def _load_uci_dropout(path: Path) -> InputTables:
    from sources.uci_dropout import load_uci_dropout

    return load_uci_dropout(path / "data.csv" if path.is_dir() else path)


def _uci_dropout_config() -> RunConfig:
    from sources.uci_dropout import SNAPSHOT_OFFSET_DAYS

    return RunConfig(
        source="uci-dropout",
        asof_offsets_days=[SNAPSHOT_OFFSET_DAYS],
        asof_labels={SNAPSHOT_OFFSET_DAYS: "snapshot"},
        validation="stratified",
        folds=5,
        undated_outcome="the file has no dates, so each dropout is placed one day "
        "after the snapshot's as-of date",
    )


def _load_table(mapping_path: Path) -> InputTables:
    from sources.table import load_table

    return load_table(mapping_path)


def _table_config(mapping_path: Path) -> RunConfig:
    from sources.table import SNAPSHOT_OFFSET_DAYS, read_mapped_table

    table = read_mapped_table(mapping_path)
    mapping = table.mapping
    return RunConfig(
        source="table",
        asof_offsets_days=[SNAPSHOT_OFFSET_DAYS],
        asof_labels={SNAPSHOT_OFFSET_DAYS: "snapshot"},
        validation=table.validation,
        temporal_cutoff=table.temporal_cutoff(),
        folds=mapping.split.folds,
        seed=mapping.split.seed,
        model_name=f"ajoissa-table-{mapping.name}",
        sensitive_features=[spec.audit_name for spec in mapping.sensitive],
        reference_groups={
            spec.audit_name: spec.reference
            for spec in mapping.sensitive
            if spec.reference is not None
        },
        min_group_size=mapping.min_group_size,
        undated_outcome="a mapped table's outcome has no date, so each row with "
        "the adverse outcome is placed one day after its as-of date, with or "
        "without a period column",
        source_details={
            "mapping": str(mapping_path.resolve()),
            "mapping_name": mapping.name,
            "data_file": str(table.path),
            "outcome": mapping.outcome.describe(),
            "excluded_columns": list(mapping.exclude),
        },
    )


SOURCES: dict[str, SourceEntry] = {
    "records": SourceEntry(
        "records",
        "A school platform's export (docs/data-contract.md), as-of 1 October, "
        "1 December and 1 February, tested on the latest school year",
        None,
        _load_records,
        _records_config,
    ),
    "oulad": SourceEntry(
        "oulad",
        "Open University Learning Analytics Dataset (CC BY 4.0), as-of course days "
        "30, 60, 90 and 120, trained on 2013 and tested on 2014 presentations",
        BUNDLED_DATA / "oulad",
        _load_oulad,
        _oulad_config,
    ),
    "uci-dropout": SourceEntry(
        "uci-dropout",
        "UCI Predict Students' Dropout and Academic Success (CC BY 4.0), one "
        "snapshot, stratified 5-fold cross-validation",
        BUNDLED_DATA / "uci-dropout-academic-success",
        _load_uci_dropout,
        _uci_dropout_config,
    ),
    "table": SourceEntry(
        "table",
        "any one-row-per-pupil table described by a mapping file (--mapping); "
        "temporal split with a period column, stratified cross-validation otherwise",
        None,
        _load_table,
        configure=_table_config,
    ),
}
