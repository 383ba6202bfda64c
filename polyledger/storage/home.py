"""One ledger, one data folder: the folder a ledger's first run is given is recorded in the
ledger (setting `data_folder`: the random `id` its marker carries, and where the folder
was last used), and every later run, `repair` and `polyledger.open` compare the marker
of the folder they are given with it. The id travels with the folder (a folder moved
whole, its marker with it, is still the ledger's); a second folder (another `--data`,
another working directory's `./data`) never has it, even while the ledger has stored
nothing anywhere yet. A copy of the folder (`cp -a data backup`) has it too: it is
refused while the recorded folder is still there with that id (a move leaves no folder
behind with it).

The first run checks the folder, claims the setting (`claim_setting`: atomic across
processes and hosts; `"unmarked": true` in it until the marker is written), then writes
the claimed id into the folder's marker: of two first runs starting together, on two
folders, one claims and the other is refused before it writes anything; on one folder,
both write the same id. A run killed between the claim and the marker leaves the folder
to be marked by the next run on it; once marked, a folder without the id is never the
ledger's (not even a new one where the old one was: the old one may have moved).
"""

from __future__ import annotations

import json
import uuid

from polyledger.errors import InputError, one_line
from polyledger.ledger import Ledger, queries
from polyledger.ledger.database import is_postgres, postgres_place
from polyledger.ledger.runs import LEDGER_ID, new_ledger_id
from polyledger.storage.base import MARKER, BarStore, DataHome

SETTING = "data_folder"


def home_of(ledger: Ledger) -> DataHome | None:
    """The folder the ledger recorded, or None before its first run (of this version)."""
    value = ledger.setting(SETTING)
    return None if value is None else _decoded(value)


def _decoded(value: str) -> DataHome:
    try:
        content = json.loads(value)
        place = content.get("ledger")
        return DataHome(
            str(content["id"]),
            str(content["location"]),
            not content.get("unmarked", False),
            None if place is None else str(place),
        )
    except (ValueError, TypeError, KeyError):
        wrong = f"the ledger's {SETTING} setting is not one polyledger wrote: {value[:80]!r}"
        raise InputError(wrong) from None


def hold_home(ledger: Ledger, store: BarStore, adjusted: bool | None = None) -> None:
    """The run's data folder is the ledger's, or becomes it (the first run): checked and
    recorded before any request; one line (InputError) otherwise, the folder unchanged."""
    samples, where, home = queries.stored_files(ledger), store.absolute_location(), home_of(ledger)
    place = _place_of(ledger)
    if ledger.setting(LEDGER_ID) is None:
        # planned by an earlier version: its id is made now, but only once the folder is
        # known to name no other ledger (stored by a refused run, a random id would lock
        # the ledger out of its own folder for good, were it a backup of that folder's)
        store.check_holder(new_ledger_id(), home)
    ledger_id = ledger.identity()
    if home is not None and (home.marked or home.location != where):
        _refuse_copy(home, store, place)
        store.hold(ledger_id, adjusted=adjusted, samples=samples, home=home)
        if home.location != where or not _same_ledger(home.ledger, place):  # moved: said from now on
            ledger.set_setting(SETTING, _encoded(DataHome(home.id, where, home.marked, place)))
        return
    if home is None:  # the first run: the folder checked, claimed, then marked with the claimed id
        marker = store.hold(ledger_id, adjusted=adjusted, samples=samples, write=False)
        mine = DataHome(str(marker.get("id") or uuid.uuid4().hex), where, marked=False, ledger=place)
        home = _decoded(ledger.claim_setting(SETTING, _encoded(mine)))  # what the first claim recorded
        if home.id != mine.id and home.location != where:  # another first run, on another folder
            raise InputError(home.refusal(store))
    else:  # claimed, not marked yet: another process's first run, now, or one killed in between
        mine = None
    try:
        store.hold(ledger_id, adjusted=adjusted, samples=samples, home=home, claimed=True)
    except InputError:
        if home == mine:  # taken by another ledger meanwhile: this ledger has no folder yet
            ledger.release_setting(SETTING, _encoded(home))
        raise
    if not home.marked:  # from now on a folder without the id is not the ledger's
        ledger.set_setting(SETTING, _encoded(DataHome(home.id, home.location, ledger=home.ledger or place)))


def check_home(ledger: Ledger, store: BarStore) -> None:
    """Read-only (`repair`, `polyledger.open`): one line when the folder's marker names
    another ledger, or another folder of this one, or the folder is a copy of the one the
    ledger records (`repair` would queue again what the copy lacks, a read would lack it)."""
    home = home_of(ledger)
    store.check_holder(ledger.setting(LEDGER_ID), home)
    if home is not None and _marked_as(store, home):  # a folder without the id: checked as before
        _refuse_copy(home, store, _place_of(ledger))


def _place_of(ledger: Ledger) -> str:
    """Where the ledger itself is (a SQLite file's absolute path, a server's database)."""
    return str(ledger.path.resolve()) if ledger.path is not None else postgres_place(ledger.name)


def _same_ledger(recorded: str | None, place: str) -> bool:
    """A place recorded by this version or an earlier one (which kept a PostgreSQL URL as
    the host spelled it) is the ledger's `place`."""
    return recorded is not None and (postgres_place(recorded) if is_postgres(recorded) else recorded) == place


def _refuse_copy(home: DataHome, store: BarStore, place: str) -> None:
    """One line (InputError) when `store` is not the folder the ledger recorded while that
    one is still there, its marker with the recorded id: `store` is then another folder
    (a copy carries the id too: `cp -a data backup`), never the folder moved, and a run on
    it would split the download over two folders. Once the recorded folder is gone, or
    holds that id no more, a folder with the id is the one moved (as before). A ledger
    no longer where it recorded the folder (`place`) is a copy itself, or moved: copied
    together with its folder (`cp -a project project2`), the two are a new pair, whose
    folder is the copy."""
    if home.location == store.absolute_location() or not (
        home.ledger is None or _same_ledger(home.ledger, place)
    ):
        return
    try:
        recorded = BarStore(home.location)
        if recorded.same_place(store):  # one folder under another name (a link): no copy
            return
        there = recorded.present() and recorded.exists(MARKER)
    except Exception as exc:  # cannot tell whether it is still there: a split is never risked
        raise InputError(
            f"data folder {store} is not the one this ledger recorded, {home.location}, which cannot "
            f"be read to tell whether it is still there: {one_line(exc, 200, with_type=True)}"
        ) from None
    try:
        marker = recorded.marker() if there else None
    except InputError:  # a marker that is not polyledger's: not the ledger's folder any more
        return
    if marker is not None and marker.get("id") == home.id:
        raise InputError(home.copy_refusal(store) if _marked_as(store, home) else home.refusal(store))


def _marked_as(store: BarStore, home: DataHome) -> bool:
    """Does `store`'s marker carry the home's id (a copy), rather than none or another?"""
    try:
        return (store.marker() or {}).get("id") == home.id
    except InputError:
        return False


def _encoded(home: DataHome) -> str:
    unmarked = {} if home.marked else {"unmarked": True}
    place = {} if home.ledger is None else {"ledger": home.ledger}
    return json.dumps({"id": home.id, "location": home.location, **unmarked, **place}, sort_keys=True)
