"""Ports chosen for listeners stay out of the kernel's range for outgoing connections."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from baton_runtime import embedded
from baton_runtime.embedded import LOOPBACK, EmbeddedServerError, free_port_block


def test_a_block_lies_below_the_ephemeral_range_and_every_port_in_it_can_be_bound() -> None:
    first_ephemeral = int(Path(embedded.EPHEMERAL_RANGE_FILE).read_text().split()[0])
    for _ in range(20):
        base = free_port_block(5)
        assert base >= embedded.FIRST_CHOSEN_PORT and base + 5 <= first_ephemeral
        for port in range(base, base + 5):
            with socket.socket() as listener:
                listener.bind((LOOPBACK, port))


def test_a_block_holding_a_listening_port_is_never_chosen(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    only_block = embedded.FIRST_CHOSEN_PORT
    ranges = tmp_path / "ip_local_port_range"
    ranges.write_text(f"{only_block + 6}\t60999\n")
    monkeypatch.setattr(embedded, "EPHEMERAL_RANGE_FILE", str(ranges))
    assert free_port_block(5) == only_block
    with socket.socket() as listener:
        listener.bind((LOOPBACK, only_block + 3))
        listener.listen()
        with pytest.raises(EmbeddedServerError, match="no 5 consecutive free ports"):
            free_port_block(5)
