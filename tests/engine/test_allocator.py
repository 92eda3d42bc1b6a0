"""A long-running process reuses the memory it frees: glibc keeps it, and Arrow allocates through glibc."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

CHILD = """
import pyarrow as pa, pyarrow.compute as pc
from engine.allocator import keep_freed_memory
default = pa.default_memory_pool().backend_name
kept = keep_freed_memory()
numbers = pc.add(pa.array(range(1_000_000)), 1)  # a buffer Arrow allocates
print(kept, default, numbers.type, pa.default_memory_pool().backend_name, pa.default_memory_pool().bytes_allocated() >= 8e6)
"""


def test_a_process_keeping_freed_memory_allocates_arrow_buffers_through_the_tuned_malloc():
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    done = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "PYTHONPATH": root})
    assert done.returncode == 0, done.stderr
    kept, default, kind, backend, allocated = done.stdout.split()
    assert (kind, allocated) == ("int64", "True")
    if platform.libc_ver()[0] == "glibc":
        assert (kept, backend) == ("True", "system")
    else:  # no mallopt: Arrow's own allocator stays
        assert (kept, backend) == ("False", default)
