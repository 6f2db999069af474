"""Scheduled scoring into the score store, in process and through the CLI."""

from __future__ import annotations

import dataclasses
import datetime as dt
import itertools
import os
import signal

import numpy as np
import pytest
import sqlalchemy as sa
import typer
from typer.testing import CliRunner

from ajoissa.cli import app
from features.build import asof_points_by_date, build_features
from models.risk import predict_risk
from serving.scheduled import AfterDataEndError, NoActivePupilsError, score_asof
from serving.scorestore import RunKey, ScoreStore

AS_OF = dt.date(2014, 3, 3)
LATER = dt.date(2014, 4, 7)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request, tmp_path):
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'scores.db'}"
    else:
        url = request.getfixturevalue("postgres_url")
    store = ScoreStore(url)
    yield store
    # Each test starts from empty tables, also on the shared PostgreSQL server.
    store.drop_tables()
    store.dispose()


def _key(trained, as_of=AS_OF) -> RunKey:
    return RunKey("oulad", as_of, trained.loaded.name, trained.loaded.version)


def test_every_active_enrolment_scored(tables, trained, scored):
    frame = build_features(tables, asof_points_by_date(tables.units, [AS_OF]))
    assert len(scored) == len(frame.data)
    assert {row.enrolment_id for row in scored} == set(frame.data["enrolment_id"])


def test_scores_equal_offline(tables, trained, scored):
    frame = build_features(tables, asof_points_by_date(tables.units, [AS_OF]))
    expected = predict_risk(
        trained.loaded.model, trained.spec, frame.data, trained.loaded.calibration
    )
    by_enrolment = {row.enrolment_id: row.probability for row in scored}
    got = np.array([by_enrolment[e] for e in frame.data["enrolment_id"]])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-12)


def test_rank_within_school(scored):
    school = scored[0].school_id
    rows = sorted(
        (row for row in scored if row.school_id == school), key=lambda r: r.school_rank
    )
    assert rows[0].school_rank == 1
    assert rows[0].probability == max(row.probability for row in rows)
    assert all(row.school_size == len(rows) for row in rows)
    assert all(a.probability >= b.probability for a, b in itertools.pairwise(rows))
    # Ranks are distinct even where calibration gives pupils one probability.
    assert [row.school_rank for row in rows] == list(range(1, len(rows) + 1))


def test_contributions_sum_to_raw_score(trained, scored):
    row = scored[0]
    total = row.contributions["base_value_log_odds"] + sum(
        item["contribution_log_odds"] for item in row.contributions["features"]
    )
    # The contributions add up to the booster's log-odds; the stored
    # probability is that score passed through the model's calibration.
    raw = 1.0 / (1.0 + np.exp(-total))
    calibrated = trained.loaded.calibration.apply(np.array([raw]))[0]
    assert abs(calibrated - row.probability) < 1e-4
    assert len(row.contributions["features"]) == len(trained.spec.features)
    assert set(row.features) == set(trained.spec.features)


def test_no_unit_running(tables, trained):
    with pytest.raises(NoActivePupilsError, match="no unit runs on the as-of date"):
        score_asof(tables, trained.loaded, dt.date(2010, 1, 1))


def test_after_data_end_rejected(tables, trained):
    # Weeks after the last record would read as weeks without any absence.
    with pytest.raises(AfterDataEndError, match="after the last date the data"):
        score_asof(tables, trained.loaded, dt.date(2020, 1, 1))


def test_pupil_scores_read_back(store, trained, scored):
    store.replace_run(_key(trained), scored)
    row = scored[0]
    found = store.pupil_scores(row.pupil_id, None)
    assert found[0].score == row
    assert found[0].run == _key(trained)
    assert store.pupil_scores(row.pupil_id, ["no-such-school"]) == []


def test_scored_at_in_utc(store, trained, scored):
    store.replace_run(_key(trained), scored[:1])
    found = store.pupil_scores(scored[0].pupil_id, None)[0]
    assert found.created_at.utcoffset() == dt.timedelta(0)


def test_rerun_replaces_only_that_run(store, trained, scored):
    store.replace_run(_key(trained), scored)
    store.replace_run(_key(trained, LATER), scored[:10])
    store.replace_run(_key(trained), scored[:5])
    runs = {key.as_of: count for _, key, count in store.runs()}
    assert runs == {AS_OF: 5, LATER: 10}
    with store.engine.connect() as connection:
        total = connection.execute(sa.text("SELECT count(*) FROM scores")).scalar()
    assert total == 15


def test_rerun_names_replaced_run(store, trained, scored):
    first = store.store_run(_key(trained), scored[:5])
    assert first.replaced_run_id is None
    second = store.store_run(_key(trained), scored[:3])
    assert second.replaced_run_id == first.run_id
    assert second.run_id != first.run_id
    assert store.run_id_of(_key(trained)) == second.run_id
    assert store.run_id_of(_key(trained, LATER)) is None


def test_run_ids_never_reused(store, trained, scored):
    store.replace_run(_key(trained), scored[:2])
    newest = store.replace_run(_key(trained, LATER), scored[:2])
    store.delete_run(newest)
    after_delete = store.replace_run(_key(trained, LATER), scored[:2])
    assert after_delete > newest
    after_replace = store.replace_run(_key(trained, LATER), scored[:2])
    assert after_replace > after_delete


def test_failed_run_keeps_previous(store, trained, scored):
    store.replace_run(_key(trained), scored[:5])
    # A repeated enrolment breaks the primary key halfway through the insert.
    broken = [*scored[:3], dataclasses.replace(scored[1], probability=0.5)]
    with pytest.raises(sa.exc.IntegrityError):
        store.replace_run(_key(trained), broken)
    runs = [(key, count) for _, key, count in store.runs()]
    assert runs == [(_key(trained), 5)]
    stored = store.pupil_scores(scored[4].pupil_id, None)
    assert stored[0].score == scored[4]


def test_delete_run_keeps_others(store, trained, scored):
    first = store.replace_run(_key(trained), scored[:5])
    store.replace_run(_key(trained, LATER), scored[:10])
    assert store.delete_run(first) == _key(trained)
    assert [(key.as_of, count) for _, key, count in store.runs()] == [(LATER, 10)]
    with store.engine.connect() as connection:
        total = connection.execute(sa.text("SELECT count(*) FROM scores")).scalar()
    assert total == 10
    with pytest.raises(LookupError, match=f"no scoring run {first}"):
        store.delete_run(first)


def test_prune_deletes_older_runs(store, trained, scored):
    store.replace_run(_key(trained), scored[:5])
    store.replace_run(_key(trained, LATER), scored[:10])
    deleted = store.prune(LATER)
    assert [(key.as_of, count) for _, key, count in deleted] == [(AS_OF, 5)]
    assert [key.as_of for _, key, _ in store.runs()] == [LATER]
    assert store.pupil_scores(scored[0].pupil_id, None)[0].run.as_of == LATER
    assert store.prune(LATER) == []


def test_cli_scores_list_and_delete(tmp_path, monkeypatch, trained, scored):
    url = f"sqlite:///{tmp_path / 'cli-runs.db'}"
    monkeypatch.setenv("AJOISSA_SCORE_STORE_URL", url)
    store = ScoreStore(url)
    run_id = store.replace_run(_key(trained), scored[:3])
    store.dispose()
    listed = CliRunner().invoke(app, ["scores", "list"])
    assert listed.exit_code == 0, listed.output
    assert "2014-03-03" in listed.output
    deleted = CliRunner().invoke(app, ["scores", "delete", str(run_id)])
    assert deleted.exit_code == 0, deleted.output
    assert f"Deleted run {run_id}: oulad as of 2014-03-03" in deleted.output
    again = CliRunner().invoke(app, ["scores", "delete", str(run_id)])
    assert again.exit_code == 2
    assert f"no scoring run {run_id} in the score store" in again.output
    empty = CliRunner().invoke(app, ["scores", "list"])
    assert "The score store has no runs." in empty.output


def test_cli_scores_prune(tmp_path, monkeypatch, trained, scored):
    url = f"sqlite:///{tmp_path / 'cli-prune.db'}"
    monkeypatch.setenv("AJOISSA_SCORE_STORE_URL", url)
    store = ScoreStore(url)
    store.replace_run(_key(trained), scored[:3])
    recent = dt.date.today() - dt.timedelta(days=10)
    store.replace_run(_key(trained, recent), scored[:4])
    store.dispose()
    result = CliRunner().invoke(app, ["scores", "prune", "--retention-days", "30"])
    assert result.exit_code == 0, result.output
    assert "Deleted 1 runs" in result.output
    assert "(3 pupil scores)" in result.output
    store = ScoreStore(url)
    assert [key.as_of for _, key, _ in store.runs()] == [recent]
    store.dispose()


def test_cli_score(tmp_path, monkeypatch, trained):
    monkeypatch.setenv("AJOISSA_HOME", str(trained.home))
    url = f"sqlite:///{tmp_path / 'cli-scores.db'}"
    monkeypatch.setenv("AJOISSA_SCORE_STORE_URL", url)
    args = ["score", "--source", "oulad", "--as-of", "2014-03-03"]
    args += ["--model-name", trained.loaded.name]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "Stored run 1:" in result.output
    store = ScoreStore(url)
    assert [key for _, key, _ in store.runs()] == [_key(trained)]
    store.dispose()


def test_cli_several_champions(monkeypatch, trained):
    monkeypatch.setenv("AJOISSA_HOME", str(trained.home))
    names = ["ajoissa-oulad", "ajoissa-uci-dropout"]
    monkeypatch.setattr("models.store.champion_model_names", lambda: names)
    args = ["score", "--source", "oulad", "--as-of", "2014-03-03"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "choose one with --model-name" in result.output


@pytest.mark.parametrize("command", ["run", "serve", "score", "promote"])
def test_cli_model_name_option(command):
    click_command = typer.main.get_command(app).commands[command]
    options = {opt for param in click_command.params for opt in param.opts}
    assert "--model-name" in options
    assert "--model" not in options


def test_cli_bad_date(trained):
    args = ["score", "--source", "oulad", "--as-of", "3/3/2014"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2
    assert "expected a date as YYYY-MM-DD or dd.mm.yyyy" in result.output


def test_cli_store_unreachable(monkeypatch, trained, scored):
    monkeypatch.setenv("AJOISSA_HOME", str(trained.home))
    # Port 1 on 127.0.0.1 has no PostgreSQL server, so connecting fails.
    url = "postgresql+psycopg://ajoissa@127.0.0.1:1/postgres"
    monkeypatch.setenv("AJOISSA_SCORE_STORE_URL", url)

    def never(tables, loaded, day):
        raise AssertionError("scored before the store was opened")

    monkeypatch.setattr("serving.scheduled.score_asof", never)
    args = ["score", "--source", "oulad", "--as-of", "2014-03-03"]
    args += ["--model-name", trained.loaded.name]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 1
    output = " ".join(result.output.split())
    assert "Cannot open the score store postgresql+psycopg://" in output
    assert "OperationalError" in output
    assert ".. " not in output
    assert "Check that the database is running" in output


def _score_cli(monkeypatch, trained, tmp_path, rows):
    """Point ``ajoissa score`` at a fresh store and let it score ``rows``."""
    monkeypatch.setenv("AJOISSA_HOME", str(trained.home))
    url = f"sqlite:///{tmp_path / 'cli-rerun.db'}"
    monkeypatch.setenv("AJOISSA_SCORE_STORE_URL", url)
    monkeypatch.setattr(
        "serving.scheduled.score_asof", lambda tables, loaded, day: rows
    )
    args = ["score", "--source", "oulad", "--as-of", "2014-03-03"]
    return url, [*args, "--model-name", trained.loaded.name]


def test_cli_score_rerun_names_replaced(tmp_path, monkeypatch, trained, scored):
    _url, args = _score_cli(monkeypatch, trained, tmp_path, scored[:3])
    first = CliRunner().invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "replaced" not in first.output
    second = CliRunner().invoke(app, args)
    assert second.exit_code == 0, second.output
    assert "Stored run 2:" in second.output
    assert "This replaced run 1, which had the same as-of date" in second.output


def test_cli_score_interrupt_before_store(tmp_path, monkeypatch, trained, scored):
    url, args = _score_cli(monkeypatch, trained, tmp_path, scored[:3])
    assert CliRunner().invoke(app, args).exit_code == 0

    def interrupt(tables, loaded, day):
        raise KeyboardInterrupt

    monkeypatch.setattr("serving.scheduled.score_asof", interrupt)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 130
    assert "the run as of 2014-03-03 was not stored" in result.output
    assert "Earlier runs are intact." in result.output
    store = ScoreStore(url)
    assert [run_id for run_id, _, _ in store.runs()] == [1]
    store.dispose()


def test_cli_score_sigterm_reported(tmp_path, monkeypatch, trained, scored):
    url, args = _score_cli(monkeypatch, trained, tmp_path, scored[:3])
    assert CliRunner().invoke(app, args).exit_code == 0

    def terminate(tables, loaded, day):
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("SIGTERM did not stop the command")

    monkeypatch.setattr("serving.scheduled.score_asof", terminate)
    handler = signal.getsignal(signal.SIGTERM)
    try:
        result = CliRunner().invoke(app, args)
    finally:
        signal.signal(signal.SIGTERM, handler)
    assert result.exit_code == 143
    assert "the run as of 2014-03-03 was not stored" in result.output
    store = ScoreStore(url)
    assert [run_id for run_id, _, _ in store.runs()] == [1]
    store.dispose()


@pytest.mark.parametrize("where", ["after the write", "inside the write"])
def test_cli_score_interrupt_after_store(tmp_path, monkeypatch, trained, scored, where):
    url, args = _score_cli(monkeypatch, trained, tmp_path, scored[:3])
    assert CliRunner().invoke(app, args).exit_code == 0

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    if where == "after the write":
        monkeypatch.setattr(ScoreStore, "dispose", interrupt)
    else:
        # The log line comes after the commit and before store_run returns.
        monkeypatch.setattr("serving.scorestore.logger.info", interrupt)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 130
    assert "Interrupted after run 2 as of 2014-03-03 was stored." in result.output
    assert "It replaced run 1." in result.output
    assert "Earlier runs are intact." in result.output
    monkeypatch.undo()
    store = ScoreStore(url)
    assert [run_id for run_id, _, _ in store.runs()] == [2]
    store.dispose()
