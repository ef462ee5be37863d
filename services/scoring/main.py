"""Scoring's wiring."""

from __future__ import annotations

from functools import partial

from baton_runtime.clock import system_clock
from baton_runtime.service import ServiceDefinition, serve
from schemas.events import LeadCaptured
from services.scoring import api, handlers, store
from services.scoring.domain import ScoringModel
from services.scoring.settings import ScoringSettings

SETTINGS = ScoringSettings



def definition(settings: ScoringSettings) -> ServiceDefinition:
    """Return scoring's wiring."""
    return ServiceDefinition(
        name="scoring",
        tables=store.plumbing,
        handlers={
            LeadCaptured.topic: partial(handlers.on_lead_captured, model=ScoringModel(),
                                        clock=system_clock),
        },
        routers=[api.router],
    )


if __name__ == "__main__":
    serve(SETTINGS, definition)
