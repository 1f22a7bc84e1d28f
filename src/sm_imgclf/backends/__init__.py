"""Backends: the one seam between the public API and where work runs.

A :class:`~sm_imgclf.backends.base.Backend` is chosen by the session object;
public classes never branch on which one they have.
"""

from sm_imgclf.backends.base import Backend

__all__ = ["Backend"]
