"""glibc allocator policies, one per kind of process (no-ops where the C library is not glibc).

Both fix the same glibc behaviour: blocks above the mmap threshold are mmap'd and returned on
free, and the threshold *rises* to the size of any such block freed (up to 32 MiB), after which
big tensors come from the heap.

- Server (`keep_large_blocks`): batched passes allocate and free the same multi-megabyte tensors
  every pass; with fresh mmap'd pages every pass page-faults them in again: measured 10 % of server
  CPU per step under 256-session load (211 -> 191 us/step). Keeping large blocks on the heap, and
  not trimming it, holds resident memory at its peak instead.
- Trainer (`mmap_large_blocks`): learner updates free ~10 MB tensors while the replay cache and the
  collector keep small arrays alive for long; with the rising threshold those tensors land on the
  heap between long-lived arrays, the holes cannot be given back and resident memory grew ~30 MB/s
  without bound on the cartpole preset (1.4 GB after 8 minutes, 6.6 GB when collecting faster).
  A fixed 8 MiB threshold keeps it flat (~520 MB) for ~5 % of update time (4 MiB cost 17 %).
  That alone still let the inline trainer grow ~30 MB per 100 updates (mid-sized blocks freed
  inside the heap, 467 -> 635 MB over 600 updates, 1.07 GB after 8 minutes): `trim` (glibc
  malloc_trim, which also returns free pages inside the heap) once a second holds it flat
  (335 MB over the same 600 updates) for ~2 ms per call.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging

log = logging.getLogger("polyskill.malloc")

_M_TRIM_THRESHOLD, _M_TOP_PAD, _M_MMAP_THRESHOLD = -1, -2, -3  # glibc malloc.h
_LARGE = 1 << 30


def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _mallopt(settings: tuple[tuple[int, int], ...]) -> bool:
    mallopt = getattr(_libc(), "mallopt", None)
    if mallopt is None:
        return False  # not glibc (macOS, musl): leave the allocator alone
    ok = all(mallopt(opt, value) == 1 for opt, value in settings)
    if not ok:
        log.warning("mallopt refused a setting; allocator left partly at its defaults")
    return ok


def keep_large_blocks() -> bool:
    """Serving: large allocations stay on the heap (no page faults per pass)."""
    # NOTE: glibc caps M_MMAP_THRESHOLD at HEAP_MAX (32 MiB on 64-bit); larger blocks still mmap.
    return _mallopt(((_M_MMAP_THRESHOLD, 32 << 20), (_M_TRIM_THRESHOLD, _LARGE),
                     (_M_TOP_PAD, 64 << 20)))


def mmap_large_blocks(threshold: int = 8 << 20) -> bool:
    """Training: blocks above `threshold` are always mmap'd, so freeing them returns memory."""
    return _mallopt(((_M_MMAP_THRESHOLD, threshold),))


_TRIM = getattr(_libc(), "malloc_trim", None)


def trim() -> None:
    """Training: give the heap's free pages back to the OS (a no-op where not glibc)."""
    if _TRIM is not None:
        _TRIM(0)
