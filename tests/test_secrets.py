"""Redaction, unit by unit: every registered secret and every URL password becomes `***`
in any text and any log record; the key comes from the environment and is registered."""

from __future__ import annotations

import logging

import pytest

import polyledger.secrets as secrets
from polyledger.secrets import REDACTED, RedactingFilter, api_key_from_env, redact, register_secret


@pytest.fixture(autouse=True)
def own_secrets(monkeypatch: pytest.MonkeyPatch) -> set[str]:
    """A fresh registry per test: nothing registered here leaks into other tests."""
    registry: set[str] = set()
    monkeypatch.setattr(secrets, "_secrets", registry)
    return registry


def test_a_registered_secret_is_replaced_everywhere_in_a_text():
    register_secret("k3y-abc")
    assert redact("a k3y-abc and k3y-abc again") == "a *** and *** again"
    assert REDACTED == "***"


def test_an_empty_value_is_never_registered(own_secrets):
    register_secret("")
    assert own_secrets == set()
    assert redact("nothing to hide") == "nothing to hide"


def test_the_longest_secret_is_replaced_first():
    register_secret("abc")
    register_secret("abcdef")
    assert redact("x abcdef y abc") == "x *** y ***"
    register_secret("zz")  # after "azz" in reverse alphabetical order, but shorter
    register_secret("azz")
    assert redact("azz") == "***"  # not "a***"


def test_text_without_secrets_is_unchanged():
    register_secret("k3y")
    assert redact("plain text") == "plain text"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("postgresql://user:pw@host/db", "postgresql://user:***@host/db"),
        ("postgresql+psycopg://u:p%40ss@h:5432/d", "postgresql+psycopg://u:***@h:5432/d"),
        ("see a://x:1@h and b://y:2@k", "see a://x:***@h and b://y:***@k"),
        ("postgresql://user@host/db", "postgresql://user@host/db"),
        ("s3://bucket/key", "s3://bucket/key"),
        ("user:pw@host", "user:pw@host"),
    ],
)
def test_a_urls_password_is_redacted_wherever_it_appears(text, expected):
    assert redact(text) == expected


def test_both_a_secret_and_a_url_password_in_one_text():
    register_secret("k3y-abc")
    assert redact("k3y-abc postgresql://u:pw@h/d") == "*** postgresql://u:***@h/d"


@pytest.mark.parametrize(
    ("environ", "key"),
    [
        ({"POLYGON_API_KEY": "p-key", "MASSIVE_API_KEY": "m-key"}, "p-key"),
        ({"MASSIVE_API_KEY": "m-key"}, "m-key"),
        ({"POLYGON_API_KEY": "  ", "MASSIVE_API_KEY": " m-key\n"}, "m-key"),
        ({}, None),
    ],
)
def test_the_key_comes_from_the_first_variable_set_and_is_registered(environ, key, own_secrets):
    assert api_key_from_env(environ) == key
    assert own_secrets == ({key} if key else set())


def test_the_key_is_read_from_the_process_environment_by_default(monkeypatch, own_secrets):
    monkeypatch.setenv("POLYGON_API_KEY", "env-key")
    monkeypatch.delenv("MASSIVE_API_KEY", raising=False)
    assert api_key_from_env() == "env-key"
    assert own_secrets == {"env-key"}


@pytest.mark.parametrize(
    "pasted",
    ["abc def123", "\u201cabc123\u201d", "abc\x07123", "abc\u00e9123"],
    ids=["inner-space", "curly-quotes", "control", "non-ascii-printable"],
)
def test_a_key_no_header_can_carry_is_refused_in_one_line_never_shown(pasted, own_secrets):
    """A pasted key with an inner space, curly quotes, a control character or another
    non-ASCII letter would fail every request: refused before any, the key never shown
    (each rule of `api_key_from_env` has its own case: found surviving mutation)."""
    from polyledger.errors import InputError

    with pytest.raises(InputError) as refused:
        api_key_from_env({"POLYGON_API_KEY": pasted})
    assert "POLYGON_API_KEY holds characters a key cannot have" in str(refused.value)
    assert pasted not in str(refused.value) and "\n" not in str(refused.value)
    assert pasted in own_secrets  # registered first: redacted wherever it might show


def record(msg: str, args: tuple | None = None) -> logging.LogRecord:
    return logging.LogRecord("polyledger", logging.INFO, __file__, 1, msg, args, None)


def test_the_log_filter_scrubs_a_formatted_message_and_drops_its_args():
    register_secret("k3y-abc")
    entry = record("key %s sent to %s", ("k3y-abc", "postgresql://u:pw@h/d"))
    assert RedactingFilter().filter(entry) is True
    assert (entry.msg, entry.args) == ("key *** sent to postgresql://u:***@h/d", None)
    assert entry.getMessage() == "key *** sent to postgresql://u:***@h/d"


def test_the_log_filter_formats_messages_with_args_even_without_secrets():
    entry = record("%d units", (3,))
    assert RedactingFilter().filter(entry) is True
    assert (entry.msg, entry.args) == ("3 units", None)


def test_the_log_filter_leaves_a_clean_message_alone():
    entry = record("all fine")
    entry.args = ()
    assert RedactingFilter().filter(entry) is True
    assert (entry.msg, entry.args) == ("all fine", ())


def test_the_log_filter_scrubs_a_message_without_args():
    register_secret("k3y-abc")
    entry = record("key k3y-abc")
    assert RedactingFilter().filter(entry) is True
    assert (entry.msg, entry.args) == ("key ***", None)


def test_the_log_filter_scrubs_a_traceback_and_a_stack():
    register_secret("k3y-abc")
    try:
        raise RuntimeError("refused k3y-abc")
    except RuntimeError:
        import sys

        entry = logging.LogRecord("polyledger", logging.ERROR, __file__, 1, "failed", None, sys.exc_info())
    entry.stack_info = "Stack (most recent call last):\n  key k3y-abc"
    assert RedactingFilter().filter(entry) is True
    assert "RuntimeError: refused ***" in entry.exc_text and "k3y-abc" not in entry.exc_text
    assert entry.stack_info == "Stack (most recent call last):\n  key ***"
    assert "k3y-abc" not in logging.Formatter().format(entry)


def test_the_log_filter_scrubs_a_traceback_already_formatted():
    register_secret("k3y-abc")
    entry = record("failed")
    entry.exc_text = "Traceback: k3y-abc"
    assert RedactingFilter().filter(entry) is True
    assert entry.exc_text == "Traceback: ***"
