"""An embedded server counts as started only once it listens itself, not when anything does."""

from __future__ import annotations

import socket

import pytest

from baton_runtime.embedded import LOOPBACK, EmbeddedServerError, embedded_kafka, free_port


def test_the_embedded_broker_refuses_to_start_on_a_port_another_server_listens_on() -> None:
    port = free_port()
    with socket.socket() as other_broker:
        other_broker.bind((LOOPBACK, port))
        other_broker.listen()
        # tansu cannot bind the port and exits; its caller must not go on with the other one.
        with (pytest.raises(EmbeddedServerError,
                            match=f"exited with .* before listening on {LOOPBACK}:{port}"),
              embedded_kafka(port=port)):
            pass
