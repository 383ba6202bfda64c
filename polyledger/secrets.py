"""The API key: where it comes from, and how it is kept out of every output."""

from __future__ import annotations

import logging
import os
import threading

KEY_ENV_VARS = ("POLYGON_API_KEY", "MASSIVE_API_KEY")
REDACTED = "***"

_lock = threading.Lock()
_secrets: set[str] = set()


def register_secret(value: str) -> None:
    """Remember a secret so `redact` removes it from any text."""
    if value:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Replace every registered secret in `text`."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def api_key_from_env(environ: dict[str, str] | None = None) -> str | None:
    """The key from POLYGON_API_KEY or MASSIVE_API_KEY (first one set), registered for redaction."""
    environ = os.environ if environ is None else environ
    for name in KEY_ENV_VARS:
        value = environ.get(name, "").strip()
        if value:
            register_secret(value)
            return value
    return None


class RedactingFilter(logging.Filter):
    """Scrubs secrets from every log record, whatever the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        return True
