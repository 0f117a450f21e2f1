"""The batch clockwork both dialects share: where a batch is at a given sim time.

Nothing runs in the background. A batch is a timeline fixed at creation
(validation ends, item i of n finishes at start + turnaround*(i+1)/n, then
finalizing), plus the events that bend it (a cancel, an early expiry), and its
state at any moment is computed when somebody looks.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

COMPLETION_WINDOW_S = 86_400

VALIDATING = "validating"
FAILED = "failed"
IN_PROGRESS = "in_progress"
FINALIZING = "finalizing"
COMPLETED = "completed"
EXPIRED = "expired"
CANCELLING = "cancelling"
CANCELLED = "cancelled"
ENDED = (FAILED, COMPLETED, EXPIRED, CANCELLED)


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A batch at one moment. `done` counts finished items, in finish order."""

    phase: str
    done: int
    in_progress_at: float | None = None
    finalizing_at: float | None = None
    ended_at: float | None = None
    cancelling_at: float | None = None

    @property
    def ended(self) -> bool:
        return self.phase in ENDED


@dataclass(slots=True)
class Timeline:
    created: float
    items: int
    validating_s: float
    turnaround_s: float
    finalizing_s: float
    cancel_s: float
    invalid: bool = False
    expire_after: int | None = None
    cancel_at: float | None = None
    window_s: float = COMPLETION_WINDOW_S  # past this, what has not run expires (Gemini: 48h)

    @property
    def start(self) -> float:
        return self.created + self.validating_s

    @property
    def expires_at(self) -> float:
        return self.created + self.window_s

    def done_by(self, t: float) -> int:
        if t < self.start:
            return 0
        if self.turnaround_s <= 0:
            return self.items
        # The epsilon keeps an item whose finish time is exactly t from being
        # lost to float rounding.
        return min(self.items, math.floor((t - self.start) * self.items / self.turnaround_s + 1e-9))

    def finished_at(self, count: int) -> float:
        """When the count-th item (1-based) finished."""
        if self.items == 0:
            return self.start
        return self.start + self.turnaround_s * count / self.items

    def _expiry(self) -> tuple[float, int] | None:
        if self.expire_after is not None:
            return self.finished_at(self.expire_after), self.expire_after
        if self.start + self.turnaround_s > self.expires_at:
            return self.expires_at, self.done_by(self.expires_at)
        return None

    def at(self, t: float) -> Snapshot:
        start = self.start
        if self.invalid:
            if t < start:
                return Snapshot(VALIDATING, 0)
            return Snapshot(FAILED, 0, ended_at=start)
        if self.cancel_at is not None and t >= self.cancel_at:
            cancel_at = self.cancel_at
            done = self.done_by(cancel_at)
            began = start if cancel_at >= start else None
            if t < cancel_at + self.cancel_s:
                return Snapshot(CANCELLING, done, began, cancelling_at=cancel_at)
            return Snapshot(
                CANCELLED, done, began, ended_at=cancel_at + self.cancel_s, cancelling_at=cancel_at
            )
        if t < start:
            return Snapshot(VALIDATING, 0)
        expiry = self._expiry()
        if expiry is not None and t >= expiry[0]:
            return Snapshot(EXPIRED, expiry[1], start, ended_at=expiry[0])
        finalizing_at = start + self.turnaround_s
        if t < finalizing_at:
            return Snapshot(IN_PROGRESS, self.done_by(t), start)
        if t < finalizing_at + self.finalizing_s:
            return Snapshot(FINALIZING, self.items, start, finalizing_at)
        return Snapshot(
            COMPLETED, self.items, start, finalizing_at, ended_at=finalizing_at + self.finalizing_s
        )


def finish_order(items: int, seed: str) -> list[int]:
    """Input positions in the order they finish: shuffled, as the real APIs return them."""
    order = list(range(items))
    random.Random(seed).shuffle(order)
    return order


def expire_after_items(items: int, fraction: float) -> int:
    return min(items, math.ceil(items * fraction))
