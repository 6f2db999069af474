"""Engines that run the learner-feature SQL of :mod:`features.definitions`.

:func:`~features.definitions.compile_sql` produces one SQL text, and every
engine here runs that same text over the same input tables: DuckDB in-process
(the default), or Apache Spark through PySpark for data that outgrows one
machine. :func:`learner_inputs` prepares the tables both engines read.

PySpark is an optional dependency (the ``spark`` extra) and needs Java 17;
this module imports it only when a :class:`SparkEngine` starts a session.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol, Self

import duckdb
import pandas as pd
import pyarrow as pa

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from sources.contract import InputTables

logger = logging.getLogger(__name__)

ENGINES = ("duckdb", "spark")
DEFAULT_SPARK_MASTER = "local[2]"
DUCKDB_MEMORY_LIMIT = "4GB"
"""Memory DuckDB may use for the learner features before it spills to disk."""


class FeatureEngine(Protocol):
    """Runs one SQL query over named pandas tables and returns the result."""

    name: str

    def run(self, sql: str, tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
        """Run ``sql`` with each of ``tables`` visible under its key."""
        ...


def learner_inputs(
    tables: InputTables, keys: pd.DataFrame
) -> tuple[dict[str, pd.DataFrame], set[str]]:
    """Return the tables the learner-feature SQL reads, and the sources they fill.

    The tables are ``asof_keys`` (distinct ``learner_id`` and ``asof_date`` of
    ``keys``) and the contract tables, with attribute columns renamed to
    ``attr_<column>``. A source is listed only when the tables have its data,
    so :func:`~features.definitions.compile_sql` skips the features of the rest.
    """
    attributes = tables.attributes.rename(
        columns={
            c: f"attr_{c}"
            for c in tables.attributes.columns
            if c not in ("enrolment_id", "known_from")
        }
    )
    sources = set()
    if len(tables.attendance):
        sources.add("attendance")
    if "subject" in tables.assessments.columns and len(tables.assessments):
        sources.add("grades")
    if len(tables.study_right_states):
        sources.add("study_rights")
    if "attr_support_level" in attributes.columns:
        sources.add("support")
    if (
        "attr_grade_level" in attributes.columns
        and "birth_date" in tables.learners.columns
    ):
        sources.add("grade_levels")
    learner_columns = ["learner_id"]
    if "birth_date" in tables.learners.columns:
        learner_columns.append("birth_date")
    inputs = {
        "asof_keys": keys[["learner_id", "asof_date"]].drop_duplicates(),
        "learners": tables.learners[learner_columns],
        "enrolments": tables.enrolments,
        "attendance": tables.attendance,
        "assessments": tables.assessments,
        "study_right_states": tables.study_right_states,
        "attributes": attributes,
    }
    return inputs, sources


class DuckDBEngine:
    """Runs the SQL in an in-process DuckDB connection, one per call."""

    name = "duckdb"

    def __init__(self, memory_limit: str = DUCKDB_MEMORY_LIMIT) -> None:
        self.memory_limit = memory_limit

    def run(self, sql: str, tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
        """Run ``sql`` with each of ``tables`` registered as a view."""
        with duckdb.connect() as con:
            con.execute("SET enable_progress_bar = false")
            con.execute(f"SET memory_limit = '{self.memory_limit}'")
            for name, frame in tables.items():
                con.register(name, frame)
            return con.execute(sql).df()


class SparkEngine:
    """Runs the SQL on Apache Spark through PySpark.

    Pass an existing ``session``, or let the engine start one on ``master``
    when it first runs a query. :meth:`close`, or leaving a ``with`` block,
    stops a session that the engine started. A session already active in the
    process is used as it is and never stopped by the engine.

    A session the engine starts uses UTC as its time zone, so naive pandas
    timestamps keep their calendar day. On a ``local`` master it binds the
    driver to 127.0.0.1, turns the web UI off and keeps its warehouse in a
    temporary folder. On a cluster the driver must be reachable from the
    executors, so the cluster's own settings (``spark-defaults.conf``, or
    ``config``) decide the addresses.

    NOTE: only ``local`` masters are tested. The input tables travel from
    pandas on the driver to Spark, so the driver's memory bounds their size.
    """

    name = "spark"

    def __init__(
        self,
        master: str = DEFAULT_SPARK_MASTER,
        session: SparkSession | None = None,
        config: Mapping[str, str] | None = None,
    ) -> None:
        self.master = master
        self.config = dict(config or {})
        self._session = session
        self._owns_session = session is None
        self._warehouse: str | None = None

    @property
    def session(self) -> SparkSession:
        """The Spark session, started on first use."""
        if self._session is None:
            self._session = self._start()
        return self._session

    def _start(self) -> SparkSession:
        try:
            from pyspark.sql import SparkSession
        except ImportError as exc:
            raise RuntimeError(
                "PySpark is not installed, so the Spark engine cannot start. "
                "Install it with pip install 'ajoissa[spark]' and install Java 17."
            ) from exc

        active = SparkSession.getActiveSession()
        if active is not None:
            logger.info(
                "using the active Spark session on %s", active.sparkContext.master
            )
            self._owns_session = False
            return active

        settings = {
            "spark.sql.session.timeZone": "UTC",
            "spark.sql.execution.arrow.pyspark.enabled": "true",
            "spark.log.level": "ERROR",
            "spark.ui.showConsoleProgress": "false",
        }
        if self.master.startswith("local"):
            self._warehouse = tempfile.mkdtemp(prefix="ajoissa-spark-warehouse-")
            settings |= {
                "spark.driver.bindAddress": "127.0.0.1",
                "spark.driver.host": "127.0.0.1",
                "spark.ui.enabled": "false",
                "spark.sql.warehouse.dir": self._warehouse,
                "spark.sql.shuffle.partitions": "4",
            }
        settings |= self.config

        builder = SparkSession.builder.master(self.master).appName("ajoissa-features")
        for key, value in settings.items():
            builder = builder.config(key, value)
        started = time.perf_counter()
        session = builder.getOrCreate()
        logger.info(
            "started Spark %s on %s in %.1f s",
            session.version,
            self.master,
            time.perf_counter() - started,
        )
        return session

    def run(self, sql: str, tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
        """Run ``sql`` with each of ``tables`` as a temporary view.

        ``DECIMAL`` results come back as ``float64``, as DuckDB returns them.
        """
        from pyspark.sql import functions as F
        from pyspark.sql.types import DecimalType

        spark = self.session
        started = time.perf_counter()
        for name, frame in tables.items():
            spark.createDataFrame(_to_arrow(frame)).createOrReplaceTempView(name)
        try:
            result = spark.sql(sql)
            result = result.select(
                *(
                    F.col(f"`{field.name}`").cast("double").alias(field.name)
                    if isinstance(field.dataType, DecimalType)
                    else F.col(f"`{field.name}`")
                    for field in result.schema.fields
                )
            )
            frame = result.toPandas()
        finally:
            for name in tables:
                spark.catalog.dropTempView(name)
        logger.info(
            "Spark returned %d rows in %.1f s",
            len(frame),
            time.perf_counter() - started,
        )
        return frame

    def close(self) -> None:
        """Stop the session if this engine started it, and remove its warehouse."""
        if self._owns_session and self._session is not None:
            self._session.stop()
            self._session = None
        if self._warehouse is not None:
            shutil.rmtree(self._warehouse, ignore_errors=True)
            self._warehouse = None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _to_arrow(frame: pd.DataFrame) -> pa.Table:
    """Convert ``frame`` to Arrow with types that Spark reads.

    Categories become text, and timestamps become microseconds, Spark's
    precision. An empty frame keeps its column types, which Spark cannot infer.
    """
    columns = {}
    for name in frame.columns:
        column = frame[name]
        if isinstance(column.dtype, pd.CategoricalDtype):
            column = column.astype("str")
        columns[name] = column
    table = pa.Table.from_pandas(pd.DataFrame(columns), preserve_index=False)
    fields = []
    for field in table.schema:
        kind = field.type
        if pa.types.is_timestamp(kind):
            kind = pa.timestamp("us")
        elif pa.types.is_large_string(kind) or pa.types.is_null(kind):
            kind = pa.string()
        fields.append(pa.field(field.name, kind))
    return table.cast(pa.schema(fields))


def make_engine(
    name: str,
    spark_master: str = DEFAULT_SPARK_MASTER,
    memory_limit: str = DUCKDB_MEMORY_LIMIT,
) -> DuckDBEngine | SparkEngine:
    """Return the engine called ``name`` (one of ``ENGINES``)."""
    if name == "duckdb":
        return DuckDBEngine(memory_limit)
    if name == "spark":
        return SparkEngine(spark_master)
    raise ValueError(
        f"feature engine {name!r} is invalid. Use one of {', '.join(ENGINES)}."
    )
