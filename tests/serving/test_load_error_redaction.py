"""Load errors lose credentials before they reach the log, /v1/model or a 503."""

from __future__ import annotations

import pytest

from serving.champion import redact_credentials


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (
            "no model 'm' in the registry at postgresql://user:s3cret@db:5432/mlflow",
            "no model 'm' in the registry at postgresql://***@db:5432/mlflow",
        ),
        (
            "GET https://mlflow.internal/api?token=abc123&run=7 failed",
            "GET https://mlflow.internal/api?token=***&run=7 failed",
        ),
        (
            "403 for https://bucket.s3/x?X-Amz-Credential=AKIA&X-Amz-Signature=f00",
            "403 for https://bucket.s3/x?X-Amz-Credential=***&X-Amz-Signature=***",
        ),
    ],
)
def test_credentials_removed(error, expected):
    assert redact_credentials(error) == expected


def test_plain_error_unchanged():
    error = (
        "model m version 3 failed its integrity check: the artifact files have "
        "SHA-256 ab12, but cd34 was recorded at registration, in sqlite:////srv/a.db"
    )
    assert redact_credentials(error) == error
