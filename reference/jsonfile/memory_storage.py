"""The JSON-file memory store (spec ``memory_storage.md``).

One directory per store (:class:`~._files.StoreDirectory`); the seed's table prefix is the
directory, and the kit's opener uses ``ctx.root / ctx.namespace / "memory_storage"`` so that
other families may share the namespace directory. Layout::

    memories/<name(user)>.json            {"user_id", "memories": [memory, ...]}  per user
    memory_ids/<name(memory id)>.json     {"id", "user_id"}: who owns the id (MS-3, MS-10)
    summaries/<name(session, user)>.json  the summary record                       (MS-14)
    conversations/<name(session, user)>.jsonl   append-only log, one message a line (MS-17)
    sessions/<name(user)>.jsonl           the sessions in which the user has messages
    format.json                           {"format", "version"} (MS-28)

``<name>`` is :func:`~._files.name_for`, injective over ids and tuples of ids, so no two users
or (session, user) pairs share a file and no id names a path outside the directory (G-2).

Costs: saving a message appends one line (O(1), it never reads the conversation): an fstat of
the log (whose descriptor the store keeps open between appends), one read of its last chunk
(for the last line's ``seq`` and the end of its last complete line, where a torn append from a
crash is cut off), one write and one fsync; only the first message of a conversation also
records the session in the user's list (a transaction).
Reading the newest N reads the log backwards until N lines are found; the count is the last
line's ``seq`` + 1 (positions are renumbered from 0 whenever a log is rewritten); clean-up by limit
reads and rewrites only the kept tail of that one conversation. A user's memories are one file,
rewritten on each change (O(memories of that user)); semantic retrieval reads them and embeds
them with the query in one call.

Every operation holds the directory lock from its first read to its last write; changes to
several files (a memory and its id entry, a new conversation and the user's session list) go
through one :class:`~._files.Transaction`. ``cleanup_old_messages`` rewrites each affected
conversation atomically; a crash between two of them leaves some conversations cleaned and
others not, which running the clean-up again completes.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import BinaryIO, Self

from agentstores.conformance.backend import StoreContext
from agentstores.spec.errors import AlreadyExists, NotFound, NotSupported, StorageUnavailable
from agentstores.spec.memory_storage import (
    ConversationMessage,
    Embedder,
    MemoryRetrieval,
    SessionSummary,
    UserMemory,
)
from agentstores.spec.messages import Message, message_to_json
from agentstores.spec.values import Clock, JSONValue, check_id, system_clock

from .. import memory_storage_rules as rules
from .._records import message_from_stored
from ._files import (
    DEFAULT_LOCK_TIMEOUT,
    JsonLinesLog,
    StoreDirectory,
    decode_json,
    encode_json,
    name_for,
    read_file,
)
from ._records import append_at, pread_exactly
from ._store import JSONStore

__all__ = ["FORMAT", "FORMAT_VERSION", "JSONMemoryStorage", "open_store"]

#: The ``format.json`` of a memory-storage directory names this format and version.
FORMAT = "agentstores-memory-storage"
FORMAT_VERSION = 1

_MEMORIES = "memories"
_MEMORY_IDS = "memory_ids"
_SUMMARIES = "summaries"
_CONVERSATIONS = "conversations"
_SESSIONS = "sessions"
_FORMAT_FILE = "format.json"
_TAIL_CHUNK = 1 << 14
_SEQ_CHUNK = 1 << 12
_KEPT_PATHS = 4096
#: Every line of a conversation log starts with its position: ``{"seq":N,``.
_SEQ_PREFIX = re.compile(rb'\{"seq":(0|[1-9][0-9]{0,18}),')


def read_tail(path: Path, count: int) -> list[JSONValue]:
    """The last ``count`` complete records of a log, reading the file backwards from its end.

    Only the chunks holding those lines are read; a torn last line (a crashed append) is
    skipped, as :class:`~._files.JsonLinesLog` readers do, and so is the header line.
    """
    try:
        with open(path, "rb") as file:
            return _read_tail(file, path.name, count)
    except FileNotFoundError:
        return []


def _read_tail(file: BinaryIO, name: str, count: int) -> list[JSONValue]:
    position = os.fstat(file.fileno()).st_size
    buffer = b""
    while True:
        start = max(0, position - _TAIL_CHUNK)
        file.seek(start)
        buffer = file.read(position - start) + buffer
        position = start
        complete_end = buffer.rfind(b"\n")
        if complete_end < 0:
            if position == 0:
                return []  # not even a complete header
            continue
        lines = buffer[:complete_end].split(b"\n")
        if position == 0:
            lines = lines[1:]  # the header
        elif len(lines) <= count:
            continue  # lines[0] may be cut; read further back
        return [decode_json(line, what=f"line of {name}") for line in lines[-count:]]


def _last_seq(fd: int, name: str, size: int) -> tuple[int | None, int]:
    """The ``seq`` of the last complete line of a conversation log of ``size`` bytes (None if
    it has none, only its header or not even that) and its valid end (after that line)."""
    position = size
    buffer = b""
    end = -1  # the offset after the last newline, once found
    chunk = _SEQ_CHUNK  # most lines are shorter
    while position > 0:
        start = max(0, position - chunk)
        chunk = _TAIL_CHUNK
        buffer = pread_exactly(fd, position - start, start) + (buffer if end >= 0 else b"")
        position = start
        if end < 0:
            newline = buffer.rfind(b"\n")
            if newline < 0:
                continue  # all of it is a torn append
            end = position + newline + 1
        last_newline = end - 1 - position
        previous = buffer.rfind(b"\n", 0, last_newline)
        if previous >= 0:
            line = buffer[previous + 1 : last_newline]
            match = _SEQ_PREFIX.match(line)
            if match is not None:  # the whole line need not be decoded
                return int(match[1]), end
            return _seq(decode_json(line, what=f"line of {name}"), name), end
    return None, max(end, 0)  # the only complete line, if any, is the header


def _seq(line: JSONValue, name: str) -> int:
    seq = line.get("seq") if isinstance(line, dict) else None
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 0:
        raise StorageUnavailable(f"corrupt line in {name}")
    return seq


class JSONMemoryStorage(JSONStore):
    """A :class:`~agentstores.spec.memory_storage.MemoryStorage` in a directory of JSON files.

    Args:
        directory: the store's directory (created on first use); the seed's table prefix.
        clock: the source of every time the store stamps (G-6).
        embedder: enables ``semantic`` retrieval (MS-7); without it semantic is NotSupported.
        fsync: fsync every write (default); False keeps writes atomic but not power-safe.
        lock_timeout: seconds an operation waits while another store object or process holds
            the directory's lock, then StorageUnavailable with nothing done (G-22); None
            waits as long as it takes.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str],
        *,
        clock: Clock = system_clock,
        embedder: Embedder | None = None,
        fsync: bool = True,
        lock_timeout: float | None = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        subdirectories = (_MEMORIES, _MEMORY_IDS, _SUMMARIES, _CONVERSATIONS, _SESSIONS)
        self._dir = StoreDirectory(
            Path(directory), subdirectories=subdirectories, sync=fsync, lock_timeout=lock_timeout
        )
        self._clock = clock
        self._embedder = embedder
        self._conversation_paths: dict[tuple[str, str], Path] = {}

    async def __aenter__(self) -> Self:
        # Migrated at open (MS-28), so that a bad or newer directory fails there.
        await self.migrate()
        return self

    # --- paths --------------------------------------------------------------------------------

    def _path(self, kind: str, *ids: str, suffix: str = ".json") -> Path:
        return self._dir.subdirectory(kind) / name_for(*ids, suffix=suffix)

    def _conversation(self, session_id: str, user_id: str) -> JsonLinesLog:
        # The paths of recent conversations are kept: hashing and joining cost as much as
        # the rest of an append's bookkeeping.
        path = self._conversation_paths.get((session_id, user_id))
        if path is None:
            if len(self._conversation_paths) >= _KEPT_PATHS:
                self._conversation_paths.clear()
            path = self._path(_CONVERSATIONS, session_id, user_id, suffix=".jsonl")
            self._conversation_paths[(session_id, user_id)] = path
        return JsonLinesLog(path, sync=self._dir.sync)

    def _sessions(self, user_id: str) -> JsonLinesLog:
        return JsonLinesLog(self._path(_SESSIONS, user_id, suffix=".jsonl"), sync=self._dir.sync)

    # --- lifecycle (MS-26 .. MS-28; close, MS-27, is JSONStore's) ---------------------------

    async def health(self) -> None:
        """Return if the directory can be locked and read; StorageUnavailable if not (MS-26)."""
        await self._dir.run(lambda: os.listdir(self._dir.path))

    async def migrate(self) -> None:
        """Create the layout and its format file; idempotent (MS-28)."""

        def migrate() -> None:
            path = self._dir.path / _FORMAT_FILE
            data = read_file(path)
            if data is None:
                transaction = self._dir.transaction()
                transaction.replace(
                    path, encode_json({"format": FORMAT, "version": FORMAT_VERSION})
                )
                transaction.commit()
                return
            found = decode_json(data, what=_FORMAT_FILE)
            if not isinstance(found, dict) or found.get("format") != FORMAT:
                raise StorageUnavailable(f"{self._dir.path} is not a memory-storage directory")
            version = found.get("version")
            if not isinstance(version, int) or version > FORMAT_VERSION:
                raise StorageUnavailable(
                    f"{self._dir.path} has format version {version!r}, newer than {FORMAT_VERSION}"
                )

        await self._dir.run(migrate)

    # --- user memories (MS-3 .. MS-13) --------------------------------------------------------

    def _load_memories(self, user_id: str) -> list[UserMemory]:
        data = read_file(self._path(_MEMORIES, user_id))
        if data is None:
            return []
        obj = decode_json(data, what="memories file")
        items = obj.get("memories") if isinstance(obj, dict) else None
        if not isinstance(items, list):
            raise StorageUnavailable("corrupt memories file")
        return [rules.memory_from_json(item) for item in items]

    def _memories_file(self, user_id: str, memories: list[UserMemory]) -> bytes:
        return encode_json(
            {"user_id": user_id, "memories": [rules.memory_to_json(m) for m in memories]}
        )

    def _write_memories(
        self,
        user_id: str,
        memories: list[UserMemory],
        *,
        add_ids: Sequence[str] = (),
        remove_ids: Sequence[str] = (),
    ) -> None:
        """Replace the user's memories file and add or remove id entries, all at once."""
        transaction = self._dir.transaction()
        path = self._path(_MEMORIES, user_id)
        if memories:
            transaction.replace(path, self._memories_file(user_id, memories))
        else:
            transaction.remove(path)
        for memory_id in add_ids:
            entry = encode_json({"id": memory_id, "user_id": user_id})
            transaction.replace(self._path(_MEMORY_IDS, memory_id), entry)
        for memory_id in remove_ids:
            transaction.remove(self._path(_MEMORY_IDS, memory_id))
        transaction.commit()

    async def save_user_memory(self, memory: UserMemory) -> UserMemory:
        """Store a new memory stamped now; AlreadyExists if its id is taken (MS-3)."""
        rules.check_memory(memory)

        def save() -> UserMemory:
            if read_file(self._path(_MEMORY_IDS, memory.id)) is not None:
                raise AlreadyExists(f"memory {memory.id!r} exists")
            now = self._clock()
            stored = UserMemory(memory.id, memory.user_id, memory.memory, memory.input, now, now)
            memories = self._load_memories(memory.user_id)
            self._write_memories(memory.user_id, [*memories, stored], add_ids=[memory.id])
            return stored

        return await self._dir.run(save)

    async def get_user_memories(
        self,
        user_id: str,
        limit: int = 0,
        retrieval: MemoryRetrieval = MemoryRetrieval.LAST_N,
        query: str | None = None,
    ) -> list[UserMemory]:
        """The user's memories by retrieval, at most ``limit`` (MS-4 .. MS-8)."""
        check_id(user_id, what="user id")
        limit = rules.check_limit(limit)
        chosen, checked_query = rules.check_retrieval(retrieval, query)
        if chosen is MemoryRetrieval.SEMANTIC and self._embedder is None:
            raise NotSupported("this store has no embedder: semantic retrieval is off")
        memories = await self._dir.run(lambda: self._load_memories(user_id))
        if chosen is MemoryRetrieval.SEMANTIC:
            assert self._embedder is not None and checked_query is not None
            ranked = await rules.rank_semantic(self._embedder, checked_query, memories)
            return rules.take(ranked, limit)
        return rules.take(rules.order_memories(memories, chosen), limit)

    async def update_user_memory(self, memory: UserMemory) -> UserMemory:
        """Replace text and input of the user's memory; NotFound otherwise (MS-9)."""
        rules.check_memory(memory)

        def update() -> UserMemory:
            memories = self._load_memories(memory.user_id)
            for index, old in enumerate(memories):
                if old.id == memory.id:
                    new = UserMemory(
                        old.id,
                        old.user_id,
                        memory.memory,
                        memory.input,
                        old.created_at,
                        self._clock(),
                    )
                    memories[index] = new
                    self._write_memories(memory.user_id, memories)
                    return new
            raise NotFound(f"user {memory.user_id!r} has no memory {memory.id!r}")

        return await self._dir.run(update)

    async def delete_user_memory(self, memory_id: str) -> None:
        """Delete the memory with this id, whoever owns it; missing is a no-op (MS-10)."""
        check_id(memory_id, what="memory id")

        def delete() -> None:
            data = read_file(self._path(_MEMORY_IDS, memory_id))
            if data is None:
                return
            entry = decode_json(data, what="memory id entry")
            owner = entry.get("user_id") if isinstance(entry, dict) else None
            if not isinstance(owner, str):
                raise StorageUnavailable("corrupt memory id entry")
            kept = [m for m in self._load_memories(owner) if m.id != memory_id]
            self._write_memories(owner, kept, remove_ids=[memory_id])

        await self._dir.run(delete)

    async def delete_user_memories_by_ids(self, user_id: str, memory_ids: Sequence[str]) -> None:
        """Delete the listed memories of ``user_id`` in one transaction (MS-11)."""
        check_id(user_id, what="user id")
        wanted = set(rules.check_memory_ids(memory_ids))

        def delete() -> None:
            memories = self._load_memories(user_id)
            gone = [m.id for m in memories if m.id in wanted]
            if gone:
                kept = [m for m in memories if m.id not in wanted]
                self._write_memories(user_id, kept, remove_ids=gone)

        await self._dir.run(delete)

    async def clear_user_memories(self, user_id: str) -> None:
        """Delete every memory of ``user_id`` (MS-12)."""
        check_id(user_id, what="user id")

        def clear() -> None:
            memories = self._load_memories(user_id)
            if memories:
                self._write_memories(user_id, [], remove_ids=[m.id for m in memories])

        await self._dir.run(clear)

    async def search_user_memories(
        self, user_id: str, query: str, limit: int = 0
    ) -> list[UserMemory]:
        """The user's memories containing ``query`` caselessly, in last_n order (MS-13)."""
        check_id(user_id, what="user id")
        needle = rules.check_text(query, what="query").casefold()
        limit = rules.check_limit(limit)
        memories = await self._dir.run(lambda: self._load_memories(user_id))
        found = [m for m in memories if rules.matches(m, needle)]
        return rules.take(rules.order_memories(found, MemoryRetrieval.LAST_N), limit)

    # --- session summaries (MS-14 .. MS-16) ---------------------------------------------------

    def _load_summary(self, session_id: str, user_id: str) -> SessionSummary | None:
        data = read_file(self._path(_SUMMARIES, session_id, user_id))
        if data is None:
            return None
        return rules.summary_from_json(decode_json(data, what="summary"))

    def _put_summary(self, summary: SessionSummary, existing_only: bool) -> SessionSummary:
        old = self._load_summary(summary.session_id, summary.user_id)
        if old is None and existing_only:
            raise NotFound(f"no summary of session {summary.session_id!r}")
        now = self._clock()
        created = now if old is None else old.created_at
        stored = SessionSummary(summary.session_id, summary.user_id, summary.summary, created, now)
        transaction = self._dir.transaction()
        transaction.replace(
            self._path(_SUMMARIES, summary.session_id, summary.user_id),
            encode_json(rules.summary_to_json(stored)),
        )
        transaction.commit()
        return stored

    async def save_session_summary(self, summary: SessionSummary) -> SessionSummary:
        """Create or replace the summary of (session, user) (MS-14)."""
        rules.check_summary(summary)
        return await self._dir.run(lambda: self._put_summary(summary, False))

    async def update_session_summary(self, summary: SessionSummary) -> SessionSummary:
        """Replace an existing summary; NotFound if there is none (MS-16)."""
        rules.check_summary(summary)
        return await self._dir.run(lambda: self._put_summary(summary, True))

    async def get_session_summary(self, session_id: str, user_id: str) -> SessionSummary | None:
        """The summary of (session, user), or None (MS-15)."""
        rules.check_pair(session_id, user_id)
        return await self._dir.run(lambda: self._load_summary(session_id, user_id))

    async def delete_session_summary(self, session_id: str, user_id: str) -> None:
        """Delete the summary of (session, user); missing is a no-op (MS-15)."""
        rules.check_pair(session_id, user_id)

        def delete() -> None:
            transaction = self._dir.transaction()
            transaction.remove(self._path(_SUMMARIES, session_id, user_id))
            transaction.commit()

        await self._dir.run(delete)

    # --- messages (MS-17 .. MS-23) ------------------------------------------------------------

    @staticmethod
    def _records(lines: list[JSONValue]) -> list[ConversationMessage]:
        return [rules.conversation_message_from_json(line) for line in lines]

    @staticmethod
    def _count(log: JsonLinesLog) -> int:
        last = read_tail(log.path, 1)
        return _seq(last[0], log.path.name) + 1 if last else 0

    @staticmethod
    def _numbered(records: Sequence[JSONValue]) -> list[JSONValue]:
        """Records renumbered 0, 1, ... (their ``seq``) for a rewritten log."""
        return [{**record, "seq": seq} for seq, record in enumerate(records)]

    async def save_message(
        self, session_id: str, user_id: str, message: Message
    ) -> ConversationMessage:
        """Append the message to the conversation log: O(1), nothing read (MS-17, MS-18)."""
        checked = rules.check_message_args(session_id, user_id, message)
        # Encoded now: later changes to the caller's message are not stored (G-7); the stored
        # copy is decoded from the same bytes that go into the line.
        encoded = encode_json(message_to_json(checked))
        stored = message_from_stored(decode_json(encoded))
        message_id = os.urandom(16).hex()  # as rules.new_message_id, at a fifth of its cost
        # The line of conversation_message_to_json with "seq" first, as bytes around the
        # two values only known under the lock (encode_json gives exactly these bytes).
        ids = encode_json({"id": message_id, "session_id": session_id, "user_id": user_id})
        middle = b"," + ids[1:-1] + b',"created_at":'

        def save() -> ConversationMessage:
            log = self._conversation(session_id, user_id)
            # The log's descriptor is kept open between appends (StoreDirectory.open_file):
            # one fstat, one read of the tail, one write and one fsync.
            opened = self._dir.open_file(log.path)
            if opened is not None:
                fd, size = opened
                last, end = _last_seq(fd, log.path.name, size)
                if last is not None:
                    now = self._clock()
                    record = ConversationMessage(message_id, session_id, user_id, stored, now)
                    if type(now) is int:
                        data = b'{"seq":%d%s%d,"message":%s}\n' % (last + 1, middle, now, encoded)
                    else:  # whatever the clock gave, stored as JSON encodes it
                        line = {"seq": last + 1, **rules.conversation_message_to_json(record)}
                        data = JsonLinesLog.encode([line])
                    append_at(fd, end, size, data, sync=log.sync)
                    return record
            # A new conversation: the user's session list learns of it too.
            record = ConversationMessage(message_id, session_id, user_id, stored, self._clock())
            line = {"seq": 0, **rules.conversation_message_to_json(record)}
            transaction = self._dir.transaction()
            transaction.append(log, [line])
            transaction.append(self._sessions(user_id), [{"session_id": session_id}])
            transaction.commit()
            return record

        return await self._dir.run(save)

    async def get_messages(
        self, session_id: str, user_id: str, limit: int = 0
    ) -> list[ConversationMessage]:
        """The newest ``limit`` messages (all for 0), oldest first; reads only them (MS-19)."""
        rules.check_pair(session_id, user_id)
        limit = rules.check_limit(limit)
        log = self._conversation(session_id, user_id)
        if limit == 0:
            lines = await self._dir.run(lambda: log.read().records)
        else:
            lines = await self._dir.run(lambda: read_tail(log.path, limit))
        return self._records(lines)

    async def delete_messages(self, session_id: str, user_id: str) -> None:
        """Delete the conversation of (session, user) (MS-20)."""
        rules.check_pair(session_id, user_id)
        # The user's session list keeps the session; clean-ups skip and drop stale entries.
        await self._dir.run(self._conversation(session_id, user_id).remove)

    async def get_message_count(self, user_id: str, session_id: str) -> int:
        """The number of messages of (session, user); user first, as in the seed (MS-21)."""
        rules.check_pair(session_id, user_id)
        return await self._dir.run(lambda: self._count(self._conversation(session_id, user_id)))

    async def cleanup_old_messages(self, user_id: str, before: int) -> None:
        """Delete the user's messages with created_at < before, all sessions (MS-22)."""
        check_id(user_id, what="user id")
        before = rules.check_before(before)

        def cleanup() -> None:
            sessions_log = self._sessions(user_id)
            entries = sessions_log.read().records
            sessions = list(
                dict.fromkeys(e.get("session_id") for e in entries if isinstance(e, dict))
            )
            live: list[str] = []
            for session_id in sessions:
                if not isinstance(session_id, str):
                    raise StorageUnavailable(f"corrupt line in {sessions_log.path.name}")
                log = self._conversation(session_id, user_id)
                lines = log.read().records
                kept = [line for line in lines if _created_at(line) >= before]
                if kept:
                    live.append(session_id)
                if not kept and lines:
                    log.remove()
                elif len(kept) < len(lines):
                    log.rewrite(self._numbered(kept))
            if not live:
                sessions_log.remove()
            elif len(live) < len(entries):
                sessions_log.rewrite([{"session_id": s} for s in live])

        await self._dir.run(cleanup)

    async def cleanup_messages_by_limit(
        self, user_id: str, session_id: str, keep_limit: int
    ) -> None:
        """Keep the newest ``keep_limit`` messages: reads and rewrites only those (MS-23)."""
        rules.check_pair(session_id, user_id)
        keep = rules.check_keep_limit(keep_limit)

        def cleanup() -> None:
            log = self._conversation(session_id, user_id)
            if self._count(log) > keep:
                log.rewrite(self._numbered(read_tail(log.path, keep)))

        await self._dir.run(cleanup)


def _created_at(line: JSONValue) -> int:
    value = line.get("created_at") if isinstance(line, dict) else None
    if not isinstance(value, int) or isinstance(value, bool):
        raise StorageUnavailable("corrupt message line: no created_at")
    return value


def open_store(ctx: StoreContext) -> AbstractAsyncContextManager[JSONMemoryStorage]:
    """The kit's opener: directory ``ctx.root / ctx.namespace / "memory_storage"``.

    ``ctx.options["embedder"]``, if given, enables semantic retrieval.
    """
    return JSONMemoryStorage(
        ctx.root / ctx.namespace / "memory_storage",
        clock=ctx.clock,
        embedder=ctx.options.get("embedder"),
    )
