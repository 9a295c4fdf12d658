"""Credentials in URIs never reach what is stored or shown."""

import pytest

from squeezeflow.redact import has_credentials, redact


@pytest.mark.parametrize("uri, shown", [
    ("postgresql://mlflow:s3cr3t@db:5432/mlflow", "postgresql://mlflow:***@db:5432/mlflow"),
    ("https://alice:pa55@mlflow.example.com/", "https://alice:***@mlflow.example.com/"),
    ("https://mlflow.example.com/?token=abc123&x=1", "https://mlflow.example.com/?token=***&x=1"),
])
def test_a_password_or_token_is_redacted(uri, shown):
    assert has_credentials(uri) and redact(uri) == shown
    assert "s3cr3t" not in redact(uri) and "pa55" not in redact(uri) and "abc123" not in redact(uri)


@pytest.mark.parametrize("uri", ["sqlite:////tmp/ws/.squeezeflow/mlflow.db", "http://127.0.0.1:5000",
                                 "file:///tmp/mlruns"])
def test_a_uri_without_credentials_is_left_alone(uri):
    assert not has_credentials(uri) and redact(uri) == uri
