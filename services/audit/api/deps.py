"""The audit's principals and guards."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends

from services.audit.domain import Reader
from services.audit.settings import AuditSettings
from services.audit.store import READER_COLUMNS, READERS
from shared.bearer import bearer_principal
from shared.errors import Forbidden
from shared.runtime import Runtime, current_runtime

current_reader = bearer_principal(
    READERS, READER_COLUMNS, lambda row: Reader(**row | {"stations": tuple(row["stations"])})
)
CurrentReader = Annotated[Reader, Depends(current_reader)]


async def evaluator(reader: CurrentReader) -> Reader:
    if not reader.sees_everything:
        raise Forbidden("verification covers every station: evaluators of all stations only")
    return reader


async def supervisor(reader: CurrentReader) -> Reader:
    if not reader.is_supervisor:
        raise Forbidden("reviews and supervision are for the stations' supervisors only")
    return reader


Evaluator = Annotated[Reader, Depends(evaluator)]
Supervisor = Annotated[Reader, Depends(supervisor)]
AuditRuntime = Annotated[Runtime[AuditSettings], Depends(current_runtime)]
