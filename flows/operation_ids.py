"""Which operation a flow run works for.

Given an operation id, the run resumes (or names) that operation. Without one, the id is
derived from the flow run itself (its kind, creation time and id), not generated at random nor
stored somewhere:

- a run from a deployment is suspended at the order gate and, once answered, starts again from
  the top; a random id would differ at each restart, and so would the plan hash (which covers
  the operation id), so the stored answer would never match the plan shown;
- storing the first id against the run would need a write before the gate, where everything
  must stay read-only, and a store that every worker reaches (Prefect's result cache lives on
  one machine and may be lost with it);
- a derivation needs neither: any worker computes the same id from the run it is given, and the
  UI's "Retry" of the same flow run goes on with the same operation (and the same report).
"""

from __future__ import annotations

from prefect.context import FlowRunContext

from runbooks.operation import check_operation_id, derived_operation_id, new_operation_id


def operation_id_for_run(kind: str, given: str | None) -> str:
    """`given` when set (checked); else derived from the current flow run; else a new id."""
    if given:
        return check_operation_id(given)
    ctx = FlowRunContext.get()
    run = ctx.flow_run if ctx else None
    if run is None:
        return new_operation_id(kind)
    created = run.created or run.expected_start_time
    if created is None:  # never seen: the server sets both
        return new_operation_id(kind)
    return derived_operation_id(kind, run.id, created)
