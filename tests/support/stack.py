"""Running the whole stack (``baton run``) as a separate process, as a user would."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass

from baton import registry
from baton_runtime.embedded import LOOPBACK, free_port, free_port_block

READY_LINE = "Baton is up."


@dataclass
class RunningStack:
    """A started stack: its process, its ports and everything it printed."""

    process: asyncio.subprocess.Process
    base_port: int
    broker_port: int
    output: list[str]

    def url(self, service: str) -> str:
        """Return the base URL of one service."""
        return f"http://{LOOPBACK}:{registry.default_port(service, self.base_port)}"

    @property
    def ports(self) -> list[int]:
        """Return every port the stack listens on."""
        return [registry.default_port(name, self.base_port) for name in registry.SERVICES] + [
            self.broker_port]


def _free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex((LOOPBACK, port)) != 0


def port_open(port: int) -> bool:
    """Return True if something listens on ``port``."""
    return not _free(port)


@contextlib.asynccontextmanager
async def running_stack(extra_env: dict[str, str], timeout: float = 120
                        ) -> AsyncIterator[RunningStack]:
    """Start ``baton run`` on free ports with embedded servers; stop it with SIGTERM."""
    env = {key: value for key, value in os.environ.items()
           if key not in ("BATON_DATABASE_URL", "BATON_KAFKA_BOOTSTRAP_SERVERS")}
    env.update(extra_env)
    stack = RunningStack(
        process=await asyncio.create_subprocess_exec(
            sys.executable, "-m", "baton", "run", "--base-port", str(base := free_port_block(5)),
            "--broker-port", str(broker := free_port()), env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT),
        base_port=base, broker_port=broker, output=[])
    ready = asyncio.Event()

    async def pump() -> None:
        assert stack.process.stdout is not None
        async for raw in stack.process.stdout:
            line = raw.decode(errors="replace").rstrip()
            stack.output.append(line)
            if line == READY_LINE:
                ready.set()

    pumping = asyncio.create_task(pump())
    try:
        waiting = asyncio.create_task(ready.wait())
        exited = asyncio.create_task(stack.process.wait())
        await asyncio.wait([waiting, exited], timeout=timeout,
                           return_when=asyncio.FIRST_COMPLETED)
        if not ready.is_set():
            raise AssertionError("stack did not come up:\n" + "\n".join(stack.output[-40:]))
        yield stack
    finally:
        if stack.process.returncode is None:
            stack.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(stack.process.wait(), 60)
        await pumping
