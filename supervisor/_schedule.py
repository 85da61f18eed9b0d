"""Children waiting to be started: due time first, then start order."""

from __future__ import annotations

import heapq
import itertools
import math
from collections.abc import Iterator

import attrs

from ._child import ChildRecord


@attrs.define
class StartSchedule:
    """When each waiting child is due to be (re)started.

    A child is waiting before its first start and during a restart backoff. Rescheduling a
    child leaves its old heap entry behind; entries are checked against ``_due`` and stale
    ones are dropped when they reach the top, which keeps every operation O(log n) with
    ten thousand children.
    """

    _due: dict[ChildRecord, tuple[float, int]] = attrs.Factory(dict)
    _heap: list[tuple[float, int, int, ChildRecord]] = attrs.Factory(list)
    _tokens: Iterator[int] = attrs.Factory(itertools.count)

    def __len__(self) -> int:
        return len(self._due)

    def __iter__(self) -> Iterator[ChildRecord]:
        """Iterate over a copy of the waiting children, so callers may reschedule."""
        return iter(list(self._due))

    def due(self, record: ChildRecord) -> float | None:
        """Tell when a child is due, or None if it is not waiting."""
        entry = self._due.get(record)
        return None if entry is None else entry[0]

    def add(self, record: ChildRecord, due: float) -> None:
        """Schedule a child, replacing any earlier schedule for it."""
        token = next(self._tokens)
        self._due[record] = (due, token)
        # Children due at the same moment (a group restart) start in start order.
        heapq.heappush(self._heap, (due, record.order, token, record))

    def discard(self, record: ChildRecord) -> None:
        """Stop waiting for a child, if it was waiting."""
        self._due.pop(record, None)

    def next_due(self) -> float:
        """Return the earliest due time, or infinity if nothing is waiting."""
        heap = self._heap
        while heap and self._due.get(heap[0][3], (None, None))[1] != heap[0][2]:
            heapq.heappop(heap)
        return heap[0][0] if heap else math.inf

    def pop_due(self, now: float) -> ChildRecord | None:
        """Take the next child due at or before ``now``, if any."""
        if self.next_due() > now:
            return None
        record = heapq.heappop(self._heap)[3]
        del self._due[record]
        return record
