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
    name: str
    description: str
    default_data: Path
    load: Callable[[Path], InputTables]
    config: Callable[[], RunConfig]


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
    )


SOURCES: dict[str, SourceEntry] = {
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
}
