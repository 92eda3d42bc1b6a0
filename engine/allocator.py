"""Long-running processes reuse the memory they free instead of handing it back to the OS at once.

A monitor scheduler builds, at every slot, arrays of tens of megabytes
(a window's partial states, a rollup's histograms: 2.8 million entries for
80 groups x 100 hosts over five minutes) and frees them a moment later.
glibc's malloc maps an allocation that large afresh each time and unmaps it
on free, and Arrow's bundled allocator (mimalloc) purges freed pages within
milliseconds: each new array then page-faults in every page it touches.
Where a fault is dear (a virtual machine whose host backs guest memory
lazily), that was most of the time: a rollup's histogram cube took 0.35-0.6 s,
0.05 s once the memory was reused.

:func:`keep_freed_memory` makes glibc serve allocations up to MMAP_BELOW
from its heap, keep up to KEEP_FREE bytes freed at its top, and Arrow
allocate through it (the system allocator).  The process then holds its
peak working set instead of returning it between slots.  Elsewhere (no
glibc) nothing changes.
"""

from __future__ import annotations

import ctypes
import ctypes.util

import pyarrow as pa

MMAP_BELOW = 32 << 20  # glibc's largest mmap threshold: larger allocations are still mapped on their own
KEEP_FREE = 1 << 30  # freed memory at the heap's top kept for reuse, up to this much
TOP_PAD = 64 << 20  # the heap grows by at least this much at a time
_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # mallopt's options (malloc.h)


def keep_freed_memory() -> bool:
    """Have this process reuse the memory it frees (see the module); whether it could (glibc only)."""
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    options = ((_M_MMAP_THRESHOLD, MMAP_BELOW), (_M_TRIM_THRESHOLD, KEEP_FREE), (_M_TOP_PAD, TOP_PAD))
    if not all(mallopt(option, value) == 1 for option, value in options):
        return False
    pa.set_memory_pool(pa.system_memory_pool())  # Arrow's buffers too, through the malloc tuned above
    return True
