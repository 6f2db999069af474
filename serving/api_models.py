"""Pydantic models of the read API's responses, which also describe it in OpenAPI."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field

MAX_PUPIL_ID_CHARS = 100
"""Maximum length of a pupil id in characters, as in the input contract's
``ID_PATTERN`` (``sources/contract.py``)."""
PUPIL_ID_PATTERN = rf"^[\w.:-]{{1,{MAX_PUPIL_ID_CHARS}}}$"
"""Pupil ids are pseudonymous: letters (ä, ö and å too), digits and ``_.:-``,
at most ``MAX_PUPIL_ID_CHARS`` characters."""


class Problem(BaseModel):
    """One invalid value, field or record in a request."""

    record: int | None = Field(
        description="0-based index of the record in /v1/score, or null when the "
        "problem concerns the request as a whole."
    )
    field: str = Field(
        description="The field, body key or parameter; '*' for a whole record."
    )
    kind: str = Field(
        description="'missing' (absent key), 'unknown' (key that is not a "
        "feature) or 'invalid' (value of the wrong type or out of range)."
    )
    value: Any = Field(
        description="The value received, shortened; null when missing or when "
        "the value is a pupil id."
    )
    expected: str = Field(description="What the field accepts.")
    message: str = Field(description="The problem as one sentence.")


class ErrorBody(BaseModel):
    """The body of every error response (4xx and 503) of the API."""

    error: str = Field(description="What failed and what to do about it.")
    problem_count: int = Field(
        default=0, description="Number of problems found; 0 when none apply."
    )
    problems: list[Problem] = Field(
        default_factory=list,
        description="The problems found, at most 100; empty when none apply.",
    )


def error_body(
    message: str,
    problems: list[dict[str, Any]] | None = None,
    problem_count: int | None = None,
) -> dict[str, Any]:
    """Return an :class:`ErrorBody` as a dict.

    ``problems`` are :class:`Problem` dicts. Only the first
    ``MAX_PROBLEMS_IN_RESPONSE`` are listed. ``problem_count`` defaults to the
    length of ``problems``; pass it when the caller listed only some of them.
    """
    listed = problems or []
    return {
        "error": message,
        "problem_count": len(listed) if problem_count is None else problem_count,
        "problems": listed[:MAX_PROBLEMS_IN_RESPONSE],
    }


MAX_PROBLEMS_IN_RESPONSE = 100
"""Maximum problems listed in an error body. ``problem_count`` is the total."""


class Reason(BaseModel):
    """One of the features that moved a score most."""

    feature: str
    value: Any = Field(
        description="The feature's value for the pupil; null if missing."
    )
    contribution_log_odds: float = Field(
        description="SHAP contribution to the score, in log-odds."
    )
    direction: str = Field(description="'raises' or 'lowers' the risk.")
    sentences: dict[str, str] | None = Field(
        default=None,
        description="The reason as one plain-language sentence per language "
        "code (fi, sv, en). Present in /v1/score responses.",
    )


class Score(BaseModel):
    """The score of one record of a scoring request."""

    probability: float = Field(description="Probability of withdrawing.")
    rank: int = Field(description="1 is the highest risk within the request.")
    rank_percentile: float = Field(
        description="100 * (records with probability <= this one) / records, "
        "within the request."
    )
    reasons: list[Reason] | None = Field(
        description="Top 3 features by absolute SHAP contribution; null when the "
        "request sets include_reasons to false."
    )
    model_name: str
    model_version: str
    as_of: str | None = Field(description="The request's as_of, echoed.")


class ServedModel(BaseModel):
    """The model version that scored a request."""

    name: str
    version: str


class ScoreResponse(BaseModel):
    """Scores in the order of the request's records."""

    scores: list[Score]
    warnings: list[str] = Field(
        description="Unseen categories, scored as missing, with record counts."
    )
    model: ServedModel


class Contribution(BaseModel):
    """A feature's value and its contribution to one stored score."""

    feature: str
    value: Any = Field(
        description="The feature's value for the pupil; null if missing."
    )
    contribution_log_odds: float


class ExplainedScore(BaseModel):
    """A stored score at one school with every feature's contribution."""

    school_id: str
    enrolment_id: str
    probability: float = Field(
        description="Probability of withdrawing, from the model."
    )
    school_rank: int = Field(description="1 is the highest risk in the school.")
    school_size: int = Field(description="Pupils scored in the school on that date.")
    reasons: list[Reason]
    base_value_log_odds: float = Field(
        description="The model's average score in log-odds; base plus contributions "
        "is the pupil's score."
    )
    contributions: list[Contribution] = Field(
        description="Every feature, largest absolute contribution first."
    )


class Explanation(BaseModel):
    """The latest stored scores of a pupil, at the schools the reader may see."""

    pupil_id: str
    as_of: dt.date
    model_name: str
    model_version: str
    scored_at: dt.datetime
    scores: list[ExplainedScore]


class HistoryEntry(BaseModel):
    """A pupil's stored score at one school on one as-of date."""

    as_of: dt.date
    school_id: str
    probability: float
    school_rank: int
    school_size: int
    reasons: list[Reason]
    model_name: str
    model_version: str
    scored_at: dt.datetime


class History(BaseModel):
    """Every stored score of a pupil at the reader's schools, newest first."""

    pupil_id: str
    entries: list[HistoryEntry]


class ModelInfo(BaseModel):
    """The model that the service scores with."""

    name: str
    version: str | None = Field(description="Null while no model is loaded.")
    alias: str | None = Field(
        description="The registry alias of the served version ('champion'); null "
        "while no model is loaded, and while the alias is on another version "
        "(registry_champion_version) that the service has not loaded."
    )
    loaded_at: dt.datetime | None
    artifact_sha256: str | None = Field(
        description="Digest of the artifact files, checked at load."
    )
    training_data_sha256: str | None = Field(
        description="Fingerprint of the training feature rows, if recorded."
    )
    source: str | None
    features: list[str] = Field(
        description="Feature names that every scoring record must contain."
    )
    metrics: dict[str, float] = Field(
        description="Metrics of the MLflow run that trained the model, named "
        "<as-of>.<model>.<metric>."
    )
    model_card_url: str | None = Field(
        description="Path, relative to the server, of the served version's model "
        "card in the review screens (/ui/models/NAME/VERSION/artifacts/"
        "model_card.html, or model_card.md when the run stored only that). It "
        "needs a reviewer's sign-in. Without a stored model card it is the "
        "version's model_card_url tag, or null."
    )
    registry_champion_version: str | None = Field(
        description="The version that carried the champion alias in the registry "
        "at this worker's last check (every AJOISSA_RELOAD_SECONDS); null when "
        "the alias was missing or the registry could not be read."
    )
    registry_champion_rejected: bool = Field(
        description="True when registry_champion_version failed to load, for "
        "example its integrity check. The service then keeps serving `version`, "
        "and last_load_error says why."
    )
    last_load_error: str | None = Field(
        description="Why the last attempt to find or load the champion failed, "
        "with credentials in URLs removed; null after a successful check."
    )


class TokenEntry(BaseModel):
    """An API token without its secret."""

    token_id: str
    role: str
    schools: list[str]
    label: str
    created_at: str
    revoked_at: str | None
