"""Credentials in URIs (a tracking server's basic auth, a database password) stay out of what is stored or shown:
Dagster run config, logs, MLflow params and printed lines get the redacted form."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

_SECRET_QUERY = re.compile(r"(?i)\b(password|passwd|pwd|token|secret|sig|signature|access_key|api_key)=([^&]+)")


def has_credentials(uri: str) -> bool:
    try:
        parts = urlsplit(uri)
    except ValueError:
        return False
    return bool(parts.password or _SECRET_QUERY.search(parts.query or ""))


def redact(uri: str) -> str:
    """The URI with its password (and secret-looking query values) replaced by ***; otherwise unchanged."""
    try:
        parts = urlsplit(uri)
    except ValueError:
        return uri
    out = uri
    if parts.password is not None:
        user = parts.username or ""
        out = out.replace(f"{parts.netloc.rsplit('@', 1)[0]}@", f"{user}:***@", 1)
    if parts.query:
        out = out.replace(parts.query, _SECRET_QUERY.sub(lambda m: f"{m[1]}=***", parts.query), 1)
    return out
