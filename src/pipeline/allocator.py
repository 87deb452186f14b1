"""Keep freed memory in the process for reuse, so large CPU tensors stop costing page faults.

Every training step allocates the gradient of the word embeddings afresh: 30,522 × 384 floats,
47 MB for MiniLM. glibc's ``malloc`` serves any block over 32 MB with a fresh ``mmap`` and hands
it back to the system with ``munmap`` when it is freed, so every step the kernel has to map and
zero 11,500 new pages. On a 2-core VM that measured 12 ms for one ``torch.zeros(30522, 384)``,
against 1 ms in memory the process already holds (``benchmarks/dropout_and_allocation.py``).
With ``mmap`` off and the top of the heap never trimmed, freed blocks stay in the heap and the
next step reuses them.

Only glibc has these settings; elsewhere (macOS, musl, Windows) this does nothing.
"""

from __future__ import annotations

import ctypes
import functools

# mallopt(3) parameter numbers, from glibc's malloc.h.
M_TRIM_THRESHOLD = -1
M_MMAP_MAX = -4

# Free memory at the top of the heap beyond this much goes back to the system; the default is 128 KiB.
KEEP_FREE_BYTES = 1 << 30


@functools.cache
def keep_freed_memory() -> bool:
    """Serve every allocation from the heap and keep up to 1 GiB of it free for reuse.

    Returns whether the C library took the settings. Safe to call more than once.
    """
    try:
        mallopt = ctypes.CDLL(None).mallopt  # the C library this process already runs on
    except (OSError, AttributeError, TypeError):  # TypeError: Windows cannot open "no library"
        return False
    # The trim threshold first: if only it is taken, nothing changes but how much free memory is kept.
    if not mallopt(M_TRIM_THRESHOLD, KEEP_FREE_BYTES):
        return False
    # Once M_MMAP_MAX is 0, glibc still maps memory itself when the heap cannot grow, so nothing fails.
    return bool(mallopt(M_MMAP_MAX, 0))
