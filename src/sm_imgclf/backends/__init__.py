"""Backends: the one seam between the public API and where work runs.

A backend (local, SageMaker, fake) implements
:class:`~sm_imgclf.contracts.backend.Backend` and is chosen by the session
object; public classes never branch on which one they have. Backends know the
contracts, the stores and the runtime's artifacts, never the session or the
public handles.
"""

from sm_imgclf.contracts.backend import Backend

__all__ = ["Backend"]
