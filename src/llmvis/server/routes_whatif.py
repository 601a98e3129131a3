"""What-if: apply interventions to a run's teacher-forced forward and compare (ablate and look)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path
from fastapi.concurrency import run_in_threadpool

from llmvis.arch import NotAvailable
from llmvis.interventions import InterventionError, WhatIfRequest, WhatIfResult
from llmvis.server import deps
from llmvis.server.deps import EngineDep, StoreDep
from llmvis.server.schemas import RunId
from llmvis.server.tickets import NeedsModel
from llmvis.server.views import compute_what_if

router = APIRouter(prefix="/api/runs", tags=["what-if"])


@router.post("/{run_id}/whatif", responses=deps.errors(404, 409))
async def what_if(
    run_id: Annotated[RunId, Path()], body: WhatIfRequest, engine: EngineDep, store: StoreDep
) -> WhatIfResult:
    """The run's tokens forced through the model with the interventions applied: the chosen
    position's probability, logit, rank and top candidates before and after, and each
    position's probability change and KL along the run. Needs the run's model loaded (409)."""

    def compute() -> WhatIfResult:
        trace = deps.get_trace(store, run_id)
        sources = {
            rid: deps.get_trace(store, rid)
            for rid in {str(i.source_run) for i in body.interventions if i.op == "patch"}
        }
        return compute_what_if(engine.slot, trace, body, sources)

    try:
        return await run_in_threadpool(compute)
    except (InterventionError, NotAvailable) as exc:
        raise deps.unprocessable(str(exc)) from exc
    except NeedsModel as exc:
        raise HTTPException(409, str(exc)) from exc
