"""Token creation, checking, listing and revocation, in process and by the CLI."""

from __future__ import annotations

import io
import sqlite3

import pytest
from rich.console import Console
from typer.testing import CliRunner

from ajoissa.access_commands import print_tokens
from ajoissa.cli import app
from serving.access import TokenStore


@pytest.fixture
def store(tmp_path) -> TokenStore:
    return TokenStore(tmp_path / "access.db")


def test_token_authenticates(store):
    token, info = store.create("staff", ["AAA_2014J", "BBB_2014B"], "a teacher")
    principal = store.authenticate(token)
    assert principal is not None
    assert principal.role == "staff"
    assert principal.schools == ("AAA_2014J", "BBB_2014B")
    assert principal.token_id == info.token_id


def test_secret_not_stored(store):
    token, _ = store.create("platform")
    secret = token.split(".", 1)[1]
    with sqlite3.connect(store.path) as connection:
        dump = "\n".join(connection.iterdump())
    assert secret not in dump


def test_wrong_secret_rejected(store):
    token, _ = store.create("platform")
    forged = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    assert store.authenticate(forged) is None


@pytest.mark.parametrize("cut", [1, 20, 43])
def test_cut_token_rejected_with_its_id(store, cut):
    # A token cut short when pasted still names its id for the access log.
    token, info = store.create("platform")
    check = store.check(token[:-cut])
    assert check.principal is None
    assert (check.token_id, check.role) == (info.token_id, "platform")


@pytest.mark.parametrize("text", ["", "Bearer x", "ajoissa_zz.yy", "ajoissa_" * 9])
def test_malformed_rejected(store, text):
    assert store.authenticate(text) is None


def test_revoked_rejected(store):
    token, info = store.create("reviewer")
    store.revoke(info.token_id)
    assert store.authenticate(token) is None
    assert store.list()[0].revoked_at is not None


def test_revocation_seen_by_open_store(store):
    # The checking store keeps its connection open between checks, as a
    # server does, while another process revokes the token.
    token, info = store.create("platform")
    assert store.authenticate(token) is not None
    TokenStore(store.path).revoke(info.token_id)
    assert store.authenticate(token) is None


def test_revoke_unknown(store):
    with pytest.raises(LookupError, match="no token with id 'nope'"):
        store.revoke("nope")


def test_staff_needs_school(store):
    with pytest.raises(ValueError, match="needs at least one school"):
        store.create("staff")


def test_school_only_for_staff(store):
    with pytest.raises(ValueError, match="takes no --school"):
        store.create("platform", ["AAA_2014J"])


def test_unknown_role(store):
    with pytest.raises(ValueError, match="invalid role 'root'"):
        store.create("root")


def test_cli_create_list_revoke(tmp_path, monkeypatch):
    monkeypatch.setenv("AJOISSA_ACCESS_DB", str(tmp_path / "cli-access.db"))
    runner = CliRunner()
    created = runner.invoke(
        app, ["tokens", "create", "--role", "staff", "--school", "AAA_2014J"]
    )
    assert created.exit_code == 0, created.output
    token = created.output.strip().splitlines()[-1]
    assert token.startswith("ajoissa_")
    store = TokenStore(tmp_path / "cli-access.db")
    token_id = store.authenticate(token).token_id
    listed = runner.invoke(app, ["tokens", "list"])
    assert token_id in listed.output
    assert token.split(".", 1)[1] not in listed.output
    revoked = runner.invoke(app, ["tokens", "revoke", token_id])
    assert revoked.exit_code == 0, revoked.output
    assert store.authenticate(token) is None
    again = runner.invoke(app, ["tokens", "revoke", token_id])
    assert again.exit_code == 2
    assert "already revoked at" in again.output


LONG_LABEL = "student welfare officer, north district, autumn term"


def test_cli_list_full_ids(tmp_path, monkeypatch):
    monkeypatch.setenv("AJOISSA_ACCESS_DB", str(tmp_path / "cli-access.db"))
    monkeypatch.setenv("COLUMNS", "80")
    store = TokenStore(tmp_path / "cli-access.db")
    schools = ["AAA-2013J", "BBB-2014B", "CCC-2014J"]
    _, info = store.create("staff", schools, LONG_LABEL)
    listed = CliRunner().invoke(app, ["tokens", "list"])
    assert listed.exit_code == 0, listed.output
    assert info.token_id in listed.output
    assert "\u2026" not in listed.output


def test_narrow_terminal_full_ids(store):
    _, info = store.create("staff", ["AAA-2013J", "BBB-2014B"], LONG_LABEL)
    out = Console(file=io.StringIO(), width=60, force_terminal=True, record=True)
    print_tokens(store.list(), out)
    assert info.token_id in out.export_text()


def test_wide_terminal_table(store):
    _, info = store.create("reviewer", label="ethics board")
    out = Console(file=io.StringIO(), width=200, force_terminal=True, record=True)
    print_tokens(store.list(), out)
    text = out.export_text()
    assert "API tokens" in text
    assert info.token_id in text


def test_revoke_by_prefix(store):
    token, info = store.create("platform")
    assert store.revoke(info.token_id[:8]) == info.token_id
    assert store.authenticate(token) is None


def test_revoke_short_prefix(store):
    _, info = store.create("platform")
    with pytest.raises(LookupError, match="unique prefix of at least 8"):
        store.revoke(info.token_id[:7])


def test_revoke_ambiguous_prefix(store, monkeypatch):
    ids = iter(["0123456789abcdef", "0123456789fedcba"])
    monkeypatch.setattr("serving.access.secrets.token_hex", lambda n: next(ids))
    store.create("platform")
    store.create("platform")
    with pytest.raises(LookupError, match="matches 2 tokens"):
        store.revoke("01234567")


def test_cli_revoke_prefix(tmp_path, monkeypatch):
    monkeypatch.setenv("AJOISSA_ACCESS_DB", str(tmp_path / "cli-access.db"))
    store = TokenStore(tmp_path / "cli-access.db")
    token, info = store.create("platform")
    revoked = CliRunner().invoke(app, ["tokens", "revoke", info.token_id[:12]])
    assert revoked.exit_code == 0, revoked.output
    assert f"Revoked token {info.token_id}." in revoked.output
    assert store.authenticate(token) is None


def test_cli_notes_school_without_scores(tmp_path, monkeypatch):
    import datetime as dt

    from serving.scorestore import RunKey, ScoreStore, StoredScore

    monkeypatch.setenv("AJOISSA_HOME", str(tmp_path))
    for variable in ("AJOISSA_ACCESS_DB", "AJOISSA_SCORE_STORE_URL", "AJOISSA_UI_DB"):
        monkeypatch.delenv(variable, raising=False)
    store = ScoreStore()
    row = StoredScore("p1", "S1", "p1-r1", 0.2, 1, 1, [], {}, {})
    store.replace_run(RunKey("records", dt.date(2025, 2, 3), "m", "1"), [row])
    store.dispose()
    runner = CliRunner()
    known = runner.invoke(
        app, ["tokens", "create", "--role", "staff", "--school", "S1"]
    )
    assert known.exit_code == 0, known.output
    assert "no scores of school" not in known.output
    typo = runner.invoke(app, ["reviews", "capacity", "S11", "20"])
    assert typo.exit_code == 0, typo.output
    assert "no scores of school 'S11'" in typo.output


@pytest.mark.parametrize("kind", ["valid", "unknown id"])
def test_cli_revoke_whole_token_hides_secret(tmp_path, monkeypatch, kind):
    monkeypatch.setenv("AJOISSA_ACCESS_DB", str(tmp_path / "cli-access.db"))
    store = TokenStore(tmp_path / "cli-access.db")
    token, info = store.create("platform")
    if kind == "unknown id":
        token = token.replace(info.token_id, "0123456789abcdef")
    secret = token.split(".", 1)[1]
    result = CliRunner().invoke(app, ["tokens", "revoke", token])
    assert secret not in result.output
    assert "only its id is used" in result.output
    if kind == "valid":
        assert result.exit_code == 0, result.output
        assert f"Revoked token {info.token_id}." in result.output
        assert store.list()[0].revoked_at is not None
    else:
        assert result.exit_code == 2, result.output
        assert "no token with id '0123456789abcdef'" in result.output


@pytest.mark.parametrize(
    "school",
    [
        "X Y;<script>",
        "<img src=x onerror=alert(1)>",
        "X/Y Z",
        "SCHOOL01/",
        "/SCHOOL01",
        "A//B",
        "line\nbreak",
        "S" * 101,
    ],
)
def test_invalid_school_rejected(store, school):
    with pytest.raises(ValueError, match="invalid school id") as excinfo:
        store.create("staff", [school])
    assert "letters, digits" in str(excinfo.value)
    assert store.list() == []


@pytest.mark.parametrize(
    "school",
    [
        "AAA-2014J",
        "VOC00001/2024",
        "unit-north@2023/24",
        "1.2.246.562.10.12345678901",
        "Yläkoulu_3",
        "S" * 100,
    ],
)
def test_school_id_forms_accepted(store, school):
    _, info = store.create("staff", [school])
    assert info.schools == (school,)


def test_cli_invalid_school_exit_2(tmp_path, monkeypatch):
    monkeypatch.setenv("AJOISSA_ACCESS_DB", str(tmp_path / "cli-access.db"))
    result = CliRunner().invoke(
        app, ["tokens", "create", "--role", "staff", "--school", "X Y;<script>"]
    )
    assert result.exit_code == 2, result.output
    assert "invalid school id 'X Y;<script>'" in result.output
    assert "letters, digits" in result.output
    assert "ajoissa_" not in result.output
    assert TokenStore(tmp_path / "cli-access.db").list() == []


def test_cli_unreachable_store_only_noted(tmp_path, monkeypatch):
    # A file where the SQLite store's folder belongs keeps the store from opening.
    blocker = tmp_path / "blocked"
    blocker.write_text("not a folder", encoding="utf-8")
    monkeypatch.setenv("AJOISSA_ACCESS_DB", str(tmp_path / "cli-access.db"))
    monkeypatch.setenv("AJOISSA_SCORE_STORE_URL", f"sqlite:///{blocker / 's.db'}")
    result = CliRunner().invoke(
        app, ["tokens", "create", "--role", "staff", "--school", "S1"]
    )
    assert result.exit_code == 0, result.output
    assert "could not check the school ids against the score store" in result.output
    assert result.output.strip().splitlines()[-1].startswith("ajoissa_")
    assert len(TokenStore(tmp_path / "cli-access.db").list()) == 1
