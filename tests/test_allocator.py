"""The allocator settings: a freed large block stays in the process for the next one."""

from __future__ import annotations

import ctypes
import platform

import pytest
import torch

from pipeline.allocator import keep_freed_memory


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                     "fsmblks", "uordblks", "fordblks", "keepcost")]


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the allocator settings are glibc's")
def test_a_freed_large_block_stays_in_the_heap_for_the_next_one():
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallinfo2"):
        pytest.skip("mallinfo2 needs glibc 2.33 or later")
    libc.mallinfo2.restype = _MallInfo2
    assert keep_freed_memory() is True
    assert keep_freed_memory() is True  # a second call changes nothing
    size = 64 << 20  # twice glibc's largest mmap threshold
    mapped_before = libc.mallinfo2().hblkhd
    block = torch.ones(size, dtype=torch.uint8)
    assert libc.mallinfo2().hblkhd < mapped_before + size  # not a fresh mapping: it came from the heap
    del block
    assert libc.mallinfo2().fordblks >= size  # freed into the heap, not handed back to the system
