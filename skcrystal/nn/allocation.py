"""Keep freed CPU memory for reuse: large tensors then cost no page faults per mini-batch.

glibc's ``malloc`` hands every block above its mmap threshold (at most 32 MB, chosen on
the fly) straight to the operating system and takes it back on ``free``; each new block
is then zeroed page by page by the kernel. A mini-batch of ALIGNN allocates dozens of
tensors of 50 to 500 MB (one row per bond pair), so on the CPU those page faults take
more than half of a training step. Raising the threshold keeps such blocks in the heap
and reuses them: measured on 2 cores, ALIGNN 2+2 of width 64 trained at 31 crystal
graphs/s before and 75 after on one day, 50 and 85 on another (docs/models.md,
``benchmarks/alignn_bench.py speed``). The heap keeps what the largest batches needed.

This changes the allocator of the whole process, so it is opt-in: call
:func:`keep_freed_memory` once, before training on the CPU. It does nothing where the C
library is not glibc (macOS, Windows, musl) and for CUDA memory, which PyTorch caches
itself.
"""

from __future__ import annotations

import ctypes
import ctypes.util

#: glibc's ``mallopt`` parameter number of the mmap threshold.
M_MMAP_THRESHOLD = -3


def keep_freed_memory(threshold: int = 2**30) -> bool:
    """Serve blocks up to ``threshold`` bytes from the reusable heap (glibc ``mallopt``).

    Parameters
    ----------
    threshold : int, default=2**30
        Blocks larger than this (1 GiB) still go to the operating system directly.

    Returns
    -------
    bool
        Whether the C library took the setting (False where it is not glibc).

    Examples
    --------
    >>> import platform
    >>> keep_freed_memory() == (platform.libc_ver()[0] == "glibc")
    True
    """
    if not 0 < threshold < 2**31:
        raise ValueError(f"threshold must be in (0, 2**31) bytes, got {threshold!r}")
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError, TypeError):
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, int(threshold)))
