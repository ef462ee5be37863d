"""Pipeline's pure rules: phases and their win probabilities."""

from __future__ import annotations

from schemas.events import DealPhase

PROBABILITY: dict[DealPhase, int] = {
    DealPhase.P1: 10, DealPhase.P2: 30, DealPhase.P3: 60, DealPhase.P4: 80, DealPhase.P5: 90,
    DealPhase.WON: 100, DealPhase.LOST: 0,
}
