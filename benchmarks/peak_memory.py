"""Peak-memory measurement shared by the benchmarks (Linux /proc, CUDA allocator statistics).

CPU: the peak resident set size (``VmHWM``) is reset by writing 5 to ``/proc/self/clear_refs`` (Linux >= 4.0)
and read back from ``/proc/self/status``; GPU: ``torch.cuda`` peak allocator statistics.
"""

from __future__ import annotations

import torch


def status_mb(field: str) -> float | None:
    """``VmRSS`` / ``VmHWM`` (peak RSS) of this process in MiB from /proc/self/status; ``None`` if unavailable."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def reset_peak_rss() -> bool:
    """Reset the peak RSS (VmHWM) of this process (Linux >= 4.0: write 5 to /proc/self/clear_refs)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def trim_heap() -> None:
    """Return freed heap memory to the OS (glibc ``malloc_trim``), so a run's peak is not hidden by reuse."""
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


class PeakMemory:
    """Peak memory increase (MiB) of a block: CUDA allocator statistics, or the CPU resident-set high-water mark."""

    def __init__(self, device: torch.device):
        self.device = device
        self.value: float | None = None

    def __enter__(self):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            trim_heap()
            self.ok = reset_peak_rss()
            self.base = status_mb("VmRSS") or 0.0
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize()
            self.value = (torch.cuda.max_memory_allocated() - self.base) / 2**20
        elif self.ok:
            self.value = max((status_mb("VmHWM") or 0.0) - self.base, 0.0)
        return False
