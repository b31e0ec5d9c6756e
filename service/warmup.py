"""Getting a serving process ready before its first caller.

The first query of each signal loads the compiled kernel from numba's cache,
which should not happen in a caller's time. numba and grpcio then leave about
140,000 long-lived objects that every full garbage collection walked, for
50-85 ms each time: the slowest 1% of 1,000-hash checks, and a third of one
process's unary throughput. Freezing the heap once warm takes them out of the
collector's way.
"""

from __future__ import annotations

import gc

from service.matcher import Matcher
from service.queries import ParsedQuery


def warm_up(matcher: Matcher) -> None:
    matcher.check(
        [
            ParsedQuery(name, bytes(t.bits // 8), t.threshold)
            for name, t in matcher.tables.items()
            if t.count
        ]
    )
    gc.freeze()
