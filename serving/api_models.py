"""Pydantic models of the read API's responses, which also describe it in OpenAPI."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import BaseModel, Field

PUPIL_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,100}$"
"""Pupil ids are pseudonymous: letters, digits and ``._:-``, at most 100."""


class ErrorBody(BaseModel):
    """An error response."""

    error: str = Field(description="What failed and what to do about it.")


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
    alias: str | None
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
        description="The version's model_card_url tag, if one was set."
    )
    last_load_error: str | None = Field(
        description="Why the newest champion version was rejected, if it was."
    )


class TokenEntry(BaseModel):
    """An API token without its secret."""

    token_id: str
    role: str
    schools: list[str]
    label: str
    created_at: str
    revoked_at: str | None
