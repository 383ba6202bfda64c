"""The PostgreSQL side of the ledger's hot path: psycopg cursors that take the same SQL
as the sqlite3 ones (`:name` and `?` parameters, rows readable by name and by index)."""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

# a quoted string or identifier (kept as is), a `::` cast, a `:name` or a `?` placeholder, a `%`
_TOKENS = re.compile(r"'(?:[^']|'')*'|\"(?:[^\"]|\"\")*\"|::|:([A-Za-z_][A-Za-z0-9_]*)|\?|%")


@functools.lru_cache(maxsize=512)
def convert_sql(sql: str) -> str:
    """`:name` -> `%(name)s`, `?` -> `%s`, `%` -> `%%` (outside quotes), once per SQL shape."""

    def replace(match: re.Match) -> str:
        text = match.group(0)
        if match.group(1):
            return f"%({match.group(1)})s"
        if text == "?":
            return "%s"
        if text == "%":
            return "%%"
        return text.replace("%", "%%") if text[0] in "'\"" else text

    return _TOKENS.sub(replace, sql)


class Row(tuple):
    """A result row readable as row[0] and row["name"], like sqlite3.Row."""

    __slots__ = ()
    _index: dict[str, int] = {}

    def __getitem__(self, key: Any) -> Any:  # type: ignore[override]
        if isinstance(key, str):
            return tuple.__getitem__(self, self._index[key])
        return tuple.__getitem__(self, key)


@functools.lru_cache(maxsize=256)
def _row_class(names: tuple[str, ...]) -> type[Row]:
    return type("Row", (Row,), {"__slots__": (), "_index": {name: i for i, name in enumerate(names)}})


def row_factory(cursor: Any):  # type: ignore[no-untyped-def]
    description = cursor.description
    if description is None:
        return tuple
    cls = _row_class(tuple(column.name for column in description))
    return lambda values: tuple.__new__(cls, values)


class Cursor:
    """What Ledger needs of a sqlite3 cursor, on a psycopg connection."""

    def __init__(self, connection: Any) -> None:
        self._cursor = connection.cursor(row_factory=row_factory)

    def execute(self, sql: str, params: Mapping | Sequence | None = None) -> Cursor:
        if params is None:
            self._cursor.execute(sql)  # nothing to bind: the SQL goes as written
        else:
            self._cursor.execute(convert_sql(sql), params)
        return self

    def executemany(self, sql: str, rows: Iterable[Mapping | Sequence]) -> Cursor:
        rows = list(rows)
        if rows:
            self._cursor.executemany(convert_sql(sql), rows)
        else:
            self._cursor.execute("SELECT 1 WHERE false")  # rowcount 0, like sqlite3
        return self

    def fetchall(self) -> list:
        return self._cursor.fetchall()

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount
