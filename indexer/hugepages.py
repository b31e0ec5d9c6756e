"""Large arrays on transparent huge pages.

The search kernel reads its tables at random. On 4 KiB pages nearly every
read also misses the TLB, and the CPU drops prefetches that would need a page
walk, so reads can't be kept in flight; on 2 MiB pages they can
(`load_tests/engine_benchmark.py --prefetch` measures both). Linux gives huge
pages to anonymous memory that asks for them (`madvise`) unless the machine
has them switched off.
"""

from __future__ import annotations

import math
import mmap
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

HUGE_PAGE = 2 << 20
SETTING = Path("/sys/kernel/mm/transparent_hugepage/enabled")


def available() -> bool:
    try:
        return "[never]" not in SETTING.read_text()
    except OSError:
        return False


def empty(shape: tuple[int, ...], dtype: Any) -> npt.NDArray[Any]:
    """Like np.empty; arrays of a huge page or more are aligned to huge pages and ask
    for them. The memory is returned when the last view of the array goes."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize
    if nbytes < HUGE_PAGE or not available():
        return np.empty(shape, dtype)
    region = mmap.mmap(-1, nbytes + HUGE_PAGE)
    region.madvise(mmap.MADV_HUGEPAGE)
    raw = np.frombuffer(region, np.uint8)
    start = -raw.ctypes.data % HUGE_PAGE
    return raw[start : start + nbytes].view(dtype).reshape(shape)
