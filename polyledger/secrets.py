"""The API key: where it comes from, and how it is kept out of every output."""

from __future__ import annotations

import logging
import os
import re
import threading

KEY_ENV_VARS = ("POLYGON_API_KEY", "MASSIVE_API_KEY")
REDACTED = "***"

_lock = threading.Lock()
_secrets: set[str] = set()
# a URL's password (scheme://user:password@host): a PostgreSQL ledger's URL may carry one
_URL_PASSWORD = re.compile(r"(\b[A-Za-z][A-Za-z0-9+.-]*://[^:/@\s]*:)[^@\s]+@")


def register_secret(value: str) -> None:
    """Remember a secret so `redact` removes it from any text."""
    if value:
        with _lock:
            _secrets.add(value)


def redact(text: str) -> str:
    """Replace every registered secret, and every URL's password, in `text`."""
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, REDACTED)
    if "://" in text:
        text = _URL_PASSWORD.sub(rf"\g<1>{REDACTED}@", text)
    return text


def api_key_from_env(environ: dict[str, str] | None = None) -> str | None:
    """The key from POLYGON_API_KEY or MASSIVE_API_KEY (first one set), registered for redaction."""
    environ = os.environ if environ is None else environ
    for name in KEY_ENV_VARS:
        value = environ.get(name, "").strip()
        if value:
            register_secret(value)
            if not (value.isascii() and value.isprintable()) or any(char.isspace() for char in value):
                from polyledger.errors import InputError  # errors imports this module

                # every request would fail on it (a header is Latin-1 text, one token)
                raise InputError(
                    f"{name} holds characters a key cannot have (a pasted quote or space?): set the key alone"
                )
            return value
    return None


class RedactingFilter(logging.Filter):
    """Scrubs secrets from every log record, whatever the handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg, record.args = cleaned, None
        if record.exc_info and not record.exc_text:
            # a traceback is text too: formatted here, scrubbed (formatters reuse exc_text)
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        return True
