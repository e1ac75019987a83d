"""Servers the engine-fault tests control: a redis-server they stop and start, and a loopback
TCP proxy they can cut or turn into a black hole.

Never the Redis on 127.0.0.1:6379: every server here is private, on a free loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import time

from agentstores.reference.redis import server as redis_server

__all__ = ["DurableRedis", "Proxy"]

_START_TIMEOUT = 10.0


class DurableRedis:
    """A private redis-server with an fsynced append-only file, so that what it acknowledged
    survives :meth:`stop` and :meth:`start` (the kit's disposable servers keep nothing)."""

    def __init__(self) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("needs the redis-server binary")
        self._binary = binary
        self._directory = tempfile.mkdtemp(prefix="agentstores-fault-")
        self._process: subprocess.Popen[bytes] | None = None
        self.port = redis_server._free_port()
        self.start()

    @property
    def url(self) -> str:
        """The server's URL (valid across restarts: the port stays)."""
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (again) on its port, with the data of its append-only file."""
        command = [
            self._binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--dir",
            self._directory,
            "--logfile",
            os.path.join(self._directory, "redis.log"),
        ]
        self._process = subprocess.Popen(
            command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        deadline = time.monotonic() + _START_TIMEOUT
        while not redis_server._answers_ping(self.port):
            if self._process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"redis-server did not start on port {self.port}")
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop the server (SIGTERM: it finishes its append-only file first)."""
        if self._process is not None:
            redis_server._stop(self._process)
            self._process = None

    def close(self) -> None:
        """Stop the server and remove its files."""
        self.stop()
        shutil.rmtree(self._directory, ignore_errors=True)


class Proxy:
    """A TCP proxy on a free loopback port in front of ``target_port``, run on the test's loop.

    :meth:`cut` closes (or resets) every connection through it, both ways, mid-stream if need be;
    while :attr:`black_hole` is set it accepts connections and swallows what they send, and
    never answers (a server or network that stopped responding without closing anything).
    """

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.black_hole = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def url(self) -> str:
        """The URL to give a Redis store so that it talks through the proxy."""
        return f"redis://127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        """Listen on a free loopback port."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        self._writers.add(writer)
        if self.black_hole:
            await self._swallow(reader)
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        self._writers.add(up_writer)
        await asyncio.gather(self._pump(reader, up_writer), self._pump(up_reader, writer))

    async def _swallow(self, reader: asyncio.StreamReader) -> None:
        with contextlib.suppress(OSError):
            while await reader.read(65536):
                pass

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                if self.black_hole:
                    continue  # swallowed: the other side never hears of it
                writer.write(data)
                await writer.drain()
        except OSError:
            pass
        finally:
            writer.close()

    def cut(self, *, reset: bool = False) -> None:
        """Close every connection through the proxy now (new ones are still accepted).

        ``reset``: abort them (TCP RST, as a crashed middlebox does) instead of closing them
        in order (FIN, as a server's idle timeout does).
        """
        for writer in list(self._writers):
            if reset:
                writer.transport.abort()
            else:
                writer.close()
        self._writers.clear()

    async def close(self) -> None:
        """Cut everything and stop listening."""
        self.cut()
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
