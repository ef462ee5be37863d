"""A stack whose services do not become ready in time says which, and exits non-zero."""

from __future__ import annotations

import os
import socket

import pytest

from baton import stack
from baton_runtime.embedded import LOOPBACK, free_port
from tests.conftest import Infrastructure


@pytest.mark.integration
async def test_a_service_not_ready_in_time_is_named_and_the_stack_exits_1(
        infrastructure: Infrastructure, capsys: pytest.CaptureFixture[str]) -> None:
    port = free_port()
    with socket.socket() as silent_broker:
        # Connections are accepted (by the kernel) and never answered: the service waits
        # for the broker, alive and not ready, for longer than the stack waits for it.
        silent_broker.bind((LOOPBACK, 0))
        silent_broker.listen()
        environment = {**os.environ, **stack.LOCAL_DEFAULTS, **infrastructure.environment(),
                       "BATON_KAFKA_BOOTSTRAP_SERVERS":
                           f"{LOOPBACK}:{silent_broker.getsockname()[1]}"}
        code = await stack._supervise(environment, {"pipeline": port}, [], grace=1,
                                      ready_timeout=1)
    assert code == 1
    assert capsys.readouterr().err.splitlines() == [
        f"baton run: not ready after 1 s: pipeline (no answer at http://{LOOPBACK}:{port}"
        "/readyz); stopping the stack"]
