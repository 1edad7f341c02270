"""The lab's one error type: something the operator has to fix before the lab can run.

The lab depends on nothing else of ours, so it keeps its own small exception rather than the
runbooks' family; messages say what is wrong and what to do about it.
"""

from __future__ import annotations


class LabError(RuntimeError):
    """The lab cannot do what was asked; the message says why and how to fix it."""
