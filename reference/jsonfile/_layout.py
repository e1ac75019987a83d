"""Layout versions of the JSON session store and session service directories.

Each of the two families writes a *layout marker* into its directory,
``session_store.layout.json`` or ``session_service.layout.json``:
``{"format": ..., "version": N}``. The current layout of both is version 2: conversations in
checksummed record logs (:mod:`._records`). Version 1 is the layout written before the record
logs, which had no marker:

* session store: ``sessions/<name>.json`` holding ``{"session", "message_count", "log"}`` and
  ``messages/<name>.jsonl``, a JSON Lines log (:class:`~._files.JsonLinesLog`) of
  ``message_to_json`` lines;
* session service: ``sv_sessions/<name>.json`` session records, ``sv_events/<name>.jsonl``
  event logs (``{"seq", "max_ts", "event"}`` lines), ``sv_event_ids/`` one marker file per
  event id and ``sv_pairs/<name>.json`` listing each (app, user) pair's session ids.

When a store object first uses its directory (holding the lock, after journal recovery,
:class:`~._files.StoreDirectory` ``on_prepare``), :func:`ensure_layout` reads the marker:

* version 2: nothing to do;
* a newer version, or a marker that is not this family's: StorageUnavailable (this code cannot
  read it, and must not write to it);
* no marker and files of version 1: the directory is migrated in place, in one
  :class:`~._files.Transaction` (journaled) that writes the new files, removes the old ones and
  writes the marker. A crash before the journal is written leaves the old layout untouched (the
  temp files are swept and the next open migrates again); after it, recovery completes the
  migration. If the old files are damaged (undecodable, or a log that does not hold as many
  entries as its session counts), nothing is changed and every operation fails with a
  StorageUnavailable that names the file;
* no marker and no files of version 1 (a new directory, or one written by version 2 code
  before markers existed): the marker is written.

So data written in the old layout never looks absent: it is migrated, or the store refuses to
work on it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from agentstores.spec.errors import InvalidArgument, StorageUnavailable, StoreError

from ._files import (
    JsonLinesLog,
    StoreDirectory,
    Transaction,
    decode_json,
    encode_json,
    name_for,
    read_file,
    write_atomic,
)

__all__ = [
    "LAYOUT_VERSION",
    "SESSION_STORE_MARKER",
    "ensure_layout",
    "ensure_session_store_layout",
    "files_named",
    "remove_empty_directories",
]

#: The layout version the JSON session store and session service write.
LAYOUT_VERSION = 2


def files_named(directory: Path, suffix: str) -> Iterator[Path]:
    """The files in ``directory`` whose names end with ``suffix``, in name order (none if the
    directory does not exist); temp files are left out."""
    try:
        names = sorted(os.listdir(directory))
    except FileNotFoundError:
        return
    for name in names:
        if name.endswith(suffix) and not name.startswith("."):
            yield directory / name


def ensure_layout(
    transaction: Callable[[], Transaction],
    marker: Path,
    *,
    format: str,
    find_old: Callable[[], str | None],
    migrate: Callable[[Transaction], None],
    sync: bool,
) -> None:
    """Make sure the directory of ``marker`` is in the current layout (see the module
    docstring); call it holding the directory's lock.

    Args:
        transaction: makes a new transaction on the directory.
        marker: the family's layout marker file.
        format: the family's format name in the marker.
        find_old: describes the version-1 files found (None if there are none).
        migrate: adds the conversion of every version-1 file to a transaction.
        sync: fsync what is written.
    """
    data = read_file(marker)
    current = encode_json({"format": format, "version": LAYOUT_VERSION})
    if data is not None:
        found = decode_json(data, what=marker.name)
        version = found.get("version") if isinstance(found, dict) else None
        if not isinstance(found, dict) or found.get("format") != format:
            raise StorageUnavailable(f"{marker} does not name the layout of a {format} directory")
        if version == LAYOUT_VERSION:
            return
        raise StorageUnavailable(
            f"{marker}: the directory is in layout version {version!r}, this agentstores "
            f"reads version {LAYOUT_VERSION} (written by a newer agentstores?); it was not "
            "changed"
        )
    old = find_old()
    if old is None:
        write_atomic(marker, current, sync=sync)
        return
    tx = transaction()
    try:
        migrate(tx)
        tx.replace(marker, current)
    except StoreError as exc:
        tx.discard()
        raise StorageUnavailable(
            f"{marker.parent} holds {old} (the layout before version {LAYOUT_VERSION}), which "
            f"cannot be migrated: {exc}. Nothing was changed; restore the damaged file or "
            f"move the directory away"
        ) from exc
    except BaseException:
        tx.discard()
        raise
    tx.commit()


def remove_empty_directories(*directories: Path) -> None:
    """Remove the directories of the old layout once they are empty (best effort: an
    empty directory left behind is harmless)."""
    for directory in directories:
        with contextlib.suppress(OSError):
            os.rmdir(directory)


# --- the session store --------------------------------------------------------------------

#: The session store's layout marker and the format name in it.
SESSION_STORE_MARKER = "session_store.layout.json"
_SESSION_STORE_FORMAT = "agentstores-json-session-store"


def ensure_session_store_layout(directory: StoreDirectory) -> None:
    """:func:`ensure_layout` for a session-store directory (its ``on_prepare``)."""
    ensure_layout(
        directory.transaction,
        directory.path / SESSION_STORE_MARKER,
        format=_SESSION_STORE_FORMAT,
        find_old=lambda: _find_session_store_v1(directory.path),
        migrate=lambda tx: _migrate_session_store_v1(directory, tx),
        sync=directory.sync,
    )


def _find_session_store_v1(root: Path) -> str | None:
    for _ in files_named(root / "messages", ".jsonl"):
        return "session-store files of layout version 1 (messages/*.jsonl)"
    # A session without messages had no log: its session file tells (a one-time read of
    # every session file, on the first open of a directory without a marker).
    for path in files_named(root / "sessions", ".json"):
        found = read_file(path)
        if found is not None and b'"message_count":' in found:
            obj = decode_json(found, what=str(path))
            if isinstance(obj, dict) and "message_count" in obj:
                return "session-store files of layout version 1 (sessions/*.json)"
    return None


def _migrate_session_store_v1(directory: StoreDirectory, tx: Transaction) -> None:
    """Each version-1 session file and its JSON Lines log become a session file of version 2
    and a record log of the same generation (see :mod:`.session_store`)."""
    # Here, not at the top: the session store imports this module.
    from .. import session_store_rules as rules
    from .session_store import _log_bytes, _messages_from, _Record

    root = directory.path
    for path in files_named(root / "sessions", ".json"):
        data = read_file(path)
        obj = None if data is None else decode_json(data, what=str(path))
        if isinstance(obj, dict) and "count" in obj and "message_count" not in obj:
            continue  # written in layout 2 already
        count, generation = (obj.get(k) if isinstance(obj, dict) else None for k in _V1_KEYS)
        if not isinstance(obj, dict) or not _count(count) or not _count(generation):
            raise StorageUnavailable(f"{path} is not a session file")
        assert isinstance(count, int) and isinstance(generation, int)
        try:
            session = rules.session_from_json(obj.get("session"), message_count=count)
        except InvalidArgument as exc:
            raise StorageUnavailable(f"{path}: {exc}") from exc
        if path.name != name_for(session.id):
            raise StorageUnavailable(f"{path} does not hold the session it is named for")
        old_log = root / "messages" / name_for(session.id, str(generation), suffix=".jsonl")
        lines = JsonLinesLog(old_log).read().records
        if len(lines) != count:
            raise StorageUnavailable(
                f"{old_log} holds {len(lines)} messages, its session file counts {count}"
            )
        _messages_from(lines)  # each one must be a message
        if lines:
            # Every message stamped with the session's last update: appends before it.
            new_log = root / "messages" / name_for(session.id, str(generation), suffix=".log")
            tx.stage(new_log, _log_bytes(lines, session.updated_at))
            tx.remove(old_log)
        tx.stage(path, _Record(session, generation, count).to_bytes())
    for path in files_named(root / "messages", ".jsonl"):
        tx.remove(path)  # logs of older generations, or of no session: never read


_V1_KEYS = ("message_count", "log")


def _count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
