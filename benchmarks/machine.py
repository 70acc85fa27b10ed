"""What a benchmark ran on: enough to tell two results' machines and code apart.

Absolute times on shared 2-core machines are noisy, so every result file records the CPU model,
core count, memory, GPU, library versions and source revision it was measured with.
"""

from __future__ import annotations

import os
import platform
import sys
from pathlib import Path

from polyskill.trainer.registry import git_revision


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what `platform` knows."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def memory_gib() -> float | None:
    """Physical memory in GiB, None where the platform does not say."""
    try:
        return round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    except (ValueError, OSError, AttributeError):
        return None


def cpuidle_driver() -> str | None:
    """The kernel's cpuidle driver (e.g. haltpoll, intel_idle; Linux): how deep idle CPUs sleep,
    which sets the wake-up cost that B=1 serving latencies pay (polyskill_client/cpu_latency.py)."""
    try:
        return Path("/sys/devices/system/cpu/cpuidle/current_driver").read_text().strip()
    except OSError:
        return None


def describe(torch_threads: int = 1) -> dict:
    """The machine and code a result came from, as a JSON-ready dict."""
    import torch

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gib": memory_gib(),
        "gpu": gpu,
        "torch_threads": torch_threads,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "platform": f"{sys.platform} {platform.machine()}",
        "cpuidle": cpuidle_driver(),
        "revision": git_revision(),
    }


def summary_line(machine: dict | str) -> str:
    """One line for a results table's header (older result files stored a plain string)."""
    if isinstance(machine, str):
        return machine
    gpu = f", {machine['gpu']}" if machine.get("gpu") else ", no GPU"
    mem = f", {machine['memory_gib']} GiB" if machine.get("memory_gib") else ""
    return (f"{machine['cpus']} x {machine['cpu']}{mem}{gpu}, torch {machine['torch']} "
            f"({machine['torch_threads']} thread), revision {machine['revision'][:12]}"
            + ("-dirty" if machine["revision"].endswith("-dirty") else ""))
