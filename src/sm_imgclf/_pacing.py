"""How long to wait between looks at work that runs elsewhere."""

from __future__ import annotations


class Pacing:
    """Waits of at least ``floor`` seconds, doubling while nothing changes.

    A service that limits how often it may be asked (SageMaker's describe and
    log calls) sets a floor; locally the floor is 0 and the caller's ``poll``
    stands. With a floor, quiet periods stretch the wait up to six floors, and
    any change brings it back.

    Args:
        poll: The wait the caller asked for.
        floor: The shortest wait the backend allows (0: no floor, no backoff).
    """

    def __init__(self, poll: float, floor: float) -> None:
        self.base = max(poll, floor)
        self.floor = floor
        self.current = self.base

    def next(self, changed: bool) -> float:
        """The next wait: the base after a change, else longer (where there is a floor)."""
        if changed or self.floor <= 0:
            self.current = self.base
        else:
            self.current = min(self.current * 2, 6 * self.floor)
        return self.current
