"""Notifier's OpenAPI document against the app itself: schemathesis, in process, real database.

Every generated request must get an answer the document lists (status and body), and
never a 5xx. Hot leads with open, overdue and met SLA clocks and their alerts are seeded,
and requests mostly name them.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import schemathesis

from baton_runtime.service import ServiceContext
from schemas.events import LifecycleStage
from tests.integration.test_notifier_delivery import promoted
from tests.support.openapi import CHECKS, InProcessService, KnownValues, generated

pytestmark = [pytest.mark.integration, pytest.mark.slow]

NOTIFIER = InProcessService.build("notifier")
schema = NOTIFIER.schema()
KNOWN = KnownValues()
KNOWN.install(schema)


async def seed(context: ServiceContext) -> None:
    """Promote hot leads to MQL: one just now, one days ago (its clock overdue), one
    accepted since (its clock met)."""
    now = datetime.now(UTC)
    fresh, overdue, accepted = (uuid.uuid4() for _ in range(3))
    await NOTIFIER.handle(context, promoted(fresh, at=now, owner_id="sato"),
                          promoted(overdue, at=now - timedelta(days=3)),
                          promoted(accepted, at=now - timedelta(hours=1), owner_id="suzuki"),
                          promoted(accepted, at=now, from_stage=LifecycleStage.MQL,
                                   to_stage=LifecycleStage.SAL, owner_id="suzuki"))
    KNOWN.add("lead_id", *(str(lead_id) for lead_id in (fresh, overdue, accepted)))


context = NOTIFIER.context_fixture(seed)


@schema.parametrize()
@generated(max_examples=30)
def test_every_answer_is_documented_and_none_is_a_server_error(
        case: schemathesis.Case[Any], context: ServiceContext) -> None:
    case.call_and_validate(checks=CHECKS)
