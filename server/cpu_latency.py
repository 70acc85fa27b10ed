"""Keep idle CPUs able to wake fast while serving: a Linux PM QoS request on /dev/cpu_dma_latency.

Why: a served B=1 step leaves the server's CPU idle twice per round trip (while the answer and
the next request cross the network), and the client's too. In a halting idle state each wake-up
costs tens to hundreds of microseconds, more on a VM (a halted vCPU needs the host to resume it).
A request for at most `max_us` microseconds of wake-up latency makes the kernel's cpuidle governor
pick shallow states (0 = poll: idle CPUs spin). Measured on the 2-vCPU Firecracker VMs (cpuidle
driver haltpoll), small model, ONNX: gRPC echo round trip 0.35 -> 0.13-0.20 ms, served B=1 step
0.77 -> 0.45-0.50 ms, the model pass in the server 0.27 -> 0.22 ms (docs/benchmarks.md).

Cost: with 0, idle CPUs poll instead of halting: more power, and on a VM its vCPUs stay busy on
the host. The tuned "latency-performance" profile makes the same request system-wide; this one
lasts exactly as long as the process holds the file open. Off by default.
"""

from __future__ import annotations

import logging
import os
import struct

log = logging.getLogger("polyskill.server.cpu_latency")

DEVICE = "/dev/cpu_dma_latency"


class CpuLatencyRequest:
    """Holds a PM QoS CPU latency limit of `max_us` microseconds until `close()` (or exit)."""

    def __init__(self, max_us: int, device: str | None = None) -> None:
        if max_us < 0:
            raise ValueError(f"cpu latency limit must be >= 0 microseconds, got {max_us}")
        device = device or DEVICE
        self.max_us, self.device = max_us, device
        try:
            self._fd: int | None = os.open(device, os.O_WRONLY)
        except OSError as e:
            raise OSError(
                f"cannot request a CPU wake-up latency of {max_us} us: opening {device} failed "
                f"({e.strerror}). It needs Linux and write access to {device} (root, or a udev "
                "rule granting the serving user); or leave --cpu-latency-us at -1 (off)") from None
        try:
            os.write(self._fd, struct.pack("i", max_us))  # the kernel reads one s32
        except OSError:
            self.close()
            raise
        log.info("cpu latency request held", extra={"max_us": max_us, "device": device})

    def close(self) -> None:
        """Withdraw the request (the kernel drops it when the file is closed)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> CpuLatencyRequest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
