"""Keep idle CPUs able to wake fast during a latency-critical loop: a Linux PM QoS request on
/dev/cpu_dma_latency. The server holds one with `--cpu-latency-us`; a control loop on another host
(`polyskill-drive --cpu-latency-us`, or `CpuLatencyRequest` in your own loop) holds its own.

Why: a B=1 step leaves both ends of the round trip idle: the server's CPU while the answer and the
next request cross the network, the client's while it waits for the action. In a halting idle
state each wake-up costs tens to hundreds of microseconds, more on a VM (a halted vCPU needs the
host to resume it). A request for at most `max_us` microseconds of wake-up latency makes the
kernel's cpuidle governor pick shallow states (0 = poll: idle CPUs spin). Measured on the 2-vCPU
Firecracker VMs (cpuidle driver haltpoll; client and server on one host, so one request covered
both), small model, ONNX: gRPC echo round trip 0.35 -> 0.13-0.20 ms, served B=1 step 0.77 ->
0.45-0.50 ms, the model pass in the server 0.27 -> 0.22 ms (docs/benchmarks.md).

Cost: with 0, idle CPUs poll instead of halting: more power, and on a VM its vCPUs stay busy on
the host. The tuned "latency-performance" profile makes the same request system-wide; this one
lasts exactly as long as the process holds the file open. Off by default.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import sys

log = logging.getLogger("polyskill_client.cpu_latency")

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
                "rule granting this user); or leave --cpu-latency-us at -1 (off)") from None
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


def hold_if_set(max_us: int) -> contextlib.AbstractContextManager:
    """The request for a `--cpu-latency-us` setting: held as a context, a no-op for -1 (off).
    Raises ValueError below -1 and OSError where the request is refused, before any work."""
    if max_us == -1:
        return contextlib.nullcontext()
    if max_us < -1:
        raise ValueError(f"--cpu-latency-us must be >= 0 (or -1 for off), got {max_us}")
    return CpuLatencyRequest(max_us)


def hold_or_report(max_us: int, prefix: str) -> contextlib.AbstractContextManager | None:
    """`hold_if_set` for a command line: None after printing `prefix` and the reason to stderr,
    so the caller exits with 2 before any work."""
    try:
        return hold_if_set(max_us)
    except (OSError, ValueError) as e:
        print(f"{prefix}{e}", file=sys.stderr)
        return None
