"""Record logs: append-only files of self-delimiting, checksummed records.

The JSON session store and session service keep each conversation (session) in one record log,
so that an append is one write and one ``fsync`` of one file. A record is one line::

    <crc32 of S: 8 hex><crc32 of P: 8 hex> <S>\\t<P>\\n

``S`` is the record's *summary* and ``P`` its *payload*, both compact JSON (``P`` may be empty:
no payload). Compact JSON never holds a raw tab or newline (they are escaped inside strings, and
UTF-8 continuation bytes are above 0x7F), so the first tab ends ``S`` and the newline ends the
record. The two checksums are separate so that a reader that needs only the summaries (a
message count, the newest events' times) verifies and decodes only those; the payload is checked
when it is decoded (:meth:`Record.payload`).

Torn appends. A process killed during an append leaves a prefix of its record, which has no
newline yet; a power cut may leave a last line whose bytes are not those written. So the
*valid end* of a log is found from its end: bytes after the last newline are a torn append, and
so is the last complete line if its summary does not check out (the line before it must then
check out, or the log is damaged: StorageUnavailable). Readers stop at the valid end, and the
next append writes there, cutting the torn bytes off first (:func:`append_at`). Finding the
valid end reads the last record or two from the end of the file: O(tail), whatever the log's
length.

Everything here works on a file descriptor opened by the caller, holding the store directory's
lock, with ``os.pread`` for reading and ``os.ftruncate`` / ``os.pwrite`` / ``os.fsync`` for
appending.
"""

from __future__ import annotations

import os
import zlib
from collections.abc import Iterator
from pathlib import Path

from agentstores.spec.errors import StorageUnavailable
from agentstores.spec.values import JSONValue

from ._files import decode_json, encode_json, fsync_directory, pwrite_all

__all__ = [
    "Record",
    "append_at",
    "append_record",
    "encode_record",
    "encoded_line",
    "lines_backwards",
    "open_for_append",
    "open_log",
    "parse_line",
    "pread_exactly",
    "read_forward",
    "read_record_at",
    "read_tail",
    "record_line",
]

_CRCS = 16  # two crc32s in hex
_FIRST_CHUNK = 1 << 13
_CHUNK = 1 << 20
_FORWARD_CHUNK = 1 << 20


class Record:
    """One record of a log: where its line is, its summary (decoded when first read) and its
    payload (decoded on request, :meth:`payload`). Both checksums are verified before use."""

    __slots__ = ("_head", "_summary", "end", "log_name", "offset", "payload_crc", "raw_payload")

    def __init__(
        self, offset: int, end: int, head: bytes, raw_payload: bytes, payload_crc: int, name: str
    ) -> None:
        self.offset = offset
        self.end = end
        self._head = head  # its checksum verified
        self._summary: JSONValue | _Unset = _UNSET
        self.raw_payload = raw_payload
        self.payload_crc = payload_crc
        self.log_name = name

    @property
    def summary(self) -> JSONValue:
        """The decoded summary."""
        if isinstance(self._summary, _Unset):
            self._summary = decode_json(self._head, what=f"record of {self.log_name}")
        return self._summary

    def payload(self) -> JSONValue:
        """The payload, decoded after its checksum is verified (None if it has none)."""
        if zlib.crc32(self.raw_payload) != self.payload_crc:
            raise StorageUnavailable(
                f"corrupt record at byte {self.offset} of {self.log_name}: payload checksum"
            )
        if not self.raw_payload:
            return None
        return decode_json(self.raw_payload, what=f"record of {self.log_name}")


class _Unset:
    pass


_UNSET = _Unset()


def encode_record(summary: JSONValue, payload: JSONValue = None) -> bytes:
    """The line of a record (see the module docstring); None means no payload."""
    return record_line(summary, b"" if payload is None else encode_json(payload))


def record_line(summary: JSONValue, payload: bytes) -> bytes:
    """The line of a record whose payload is already encoded (``encode_json``; b"": none)."""
    return encoded_line(encode_json(summary), payload)


def encoded_line(head: bytes, payload: bytes) -> bytes:
    """The line of a record whose summary and payload are both encoded (``encode_json``)."""
    return b"%08x%08x " % (zlib.crc32(head), zlib.crc32(payload)) + head + b"\t" + payload + b"\n"


def parse_line(line: bytes, offset: int, name: str) -> Record | None:
    """The record of ``line`` (without its newline) at ``offset``, or None if its summary does
    not check out (a torn or damaged line)."""
    if len(line) <= _CRCS or line[_CRCS] != 0x20:
        return None
    tab = line.find(b"\t", _CRCS + 1)
    if tab < 0:
        return None
    head = line[_CRCS + 1 : tab]
    try:
        if int(line[:8], 16) != zlib.crc32(head):
            return None
        payload_crc = int(line[8:_CRCS], 16)
    except ValueError:
        return None
    # The summary checks out: it is the JSON that was written, decoded when first read.
    return Record(offset, offset + len(line) + 1, head, line[tab + 1 :], payload_crc, name)


# --- reading ----------------------------------------------------------------------------------


def pread_exactly(fd: int, size: int, offset: int) -> bytes:
    """Exactly ``size`` bytes at ``offset`` (fewer only at the end of the file)."""
    pieces = []
    while size > 0:
        piece = os.pread(fd, size, offset)
        if not piece:
            break
        pieces.append(piece)
        size -= len(piece)
        offset += len(piece)
    return b"".join(pieces)


def lines_backwards(fd: int, end: int) -> Iterator[tuple[int, bytes]]:
    """``(offset, line)`` of the complete lines before ``end``, last first, without their
    newlines; the bytes after the last newline (a torn append) are skipped."""
    position = end  # the buffer holds the file from here ...
    buffer = b""
    limit = -1  # ... up to this newline, the one ending the next line to yield
    chunk = _FIRST_CHUNK  # small first: most callers want the last record or two
    while True:
        if limit < 0:
            newline = buffer.rfind(b"\n")
            if newline >= 0:
                limit = position + newline
                continue
        else:
            newline = buffer.rfind(b"\n", 0, limit - position)
            if newline >= 0 or position == 0:
                yield position + newline + 1, buffer[newline + 1 : limit - position]
                limit = position + newline
                if limit < 0:
                    return
                continue
        if position == 0:
            return
        start = max(0, position - chunk)
        kept = b"" if limit < 0 else buffer[: limit - position]  # no newline: torn bytes
        buffer = pread_exactly(fd, position - start, start) + kept
        position = start
        chunk = min(chunk * 8, _CHUNK)


def read_tail(fd: int, size: int, name: str) -> tuple[Record | None, int]:
    """The last record of the log and its valid end (None and 0 if it has no record)."""
    lines = lines_backwards(fd, size)
    for offset, line in lines:
        record = parse_line(line, offset, name)
        if record is not None:
            return record, record.end
        # The last complete line is damaged: a torn append. The one before must be whole.
        for before_offset, before in lines:
            record = parse_line(before, before_offset, name)
            if record is None:
                raise StorageUnavailable(f"corrupt record at byte {before_offset} of {name}")
            return record, offset
        return None, 0
    return None, 0


def read_record_at(fd: int, offset: int, end: int, name: str) -> Record:
    """The record starting at ``offset`` (before the valid end ``end``)."""
    pieces = []
    position = offset
    chunk = _FIRST_CHUNK
    while True:
        piece = pread_exactly(fd, min(chunk, end - position), position) if position < end else b""
        if not piece:
            raise StorageUnavailable(f"corrupt {name}: no record at byte {offset}")
        pieces.append(piece)
        position += len(piece)
        if b"\n" in piece:
            break
        chunk = min(chunk * 8, _CHUNK)
    data = b"".join(pieces)
    newline = data.index(b"\n")
    record = parse_line(data[:newline], offset, name)
    if record is None:
        raise StorageUnavailable(f"corrupt record at byte {offset} of {name}")
    return record


def read_forward(fd: int, start: int, size: int, name: str) -> tuple[list[Record], int]:
    """The records from ``start`` (a record boundary) to ``size``, and the valid end.

    The torn-append rules of :func:`read_tail` apply at the end; a damaged line before the
    last complete one is StorageUnavailable.
    """
    records: list[Record] = []
    damaged: int | None = None  # a damaged line may only be the last complete one
    position = start
    carry = b""
    at = start  # where `carry` starts
    while position < size:
        chunk = pread_exactly(fd, min(_FORWARD_CHUNK, size - position), position)
        if not chunk:
            break
        position += len(chunk)
        lines = (carry + chunk).split(b"\n")
        carry = lines.pop()
        for line in lines:
            if damaged is not None:
                raise StorageUnavailable(f"corrupt record at byte {damaged} of {name}")
            record = parse_line(line, at, name)
            if record is None:
                damaged = at
            else:
                records.append(record)
            at += len(line) + 1
    return records, (records[-1].end if records else start)


# --- writing ----------------------------------------------------------------------------------


def open_log(path: Path) -> int | None:
    """A read-only descriptor of the log at ``path``, or None if there is none."""
    try:
        return os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None


def open_for_append(path: Path) -> tuple[int, bool]:
    """A read-write descriptor of the log at ``path`` and whether the file was created now (then
    its directory must be fsynced once the first append is)."""
    try:
        return os.open(path, os.O_RDWR | os.O_CLOEXEC), False
    except FileNotFoundError:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666), True


def append_at(fd: int, at: int, size: int, data: bytes, *, sync: bool) -> None:
    """Write ``data`` at the valid end ``at`` of a log of ``size`` bytes, cutting off a torn
    append first, and fsync it (one write and one fsync in the common case)."""
    if size > at:
        os.ftruncate(fd, at)
    pwrite_all(fd, data, at)
    if sync:
        os.fsync(fd)


def append_record(path: Path, data: bytes, *, sync: bool) -> None:
    """Append the record line ``data`` to the log at ``path`` (created if missing), durably."""
    fd, created = open_for_append(path)
    try:
        size = os.fstat(fd).st_size
        _, end = read_tail(fd, size, path.name)
        append_at(fd, end, size, data, sync=sync)
    finally:
        os.close(fd)
    if created and sync:
        fsync_directory(path.parent)
