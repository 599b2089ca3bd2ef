"""Helpers shared by the benchmark scripts: memory readings and machine facts."""

from __future__ import annotations

import os
import platform
from typing import Any

import torch


def proc_status_kib(field: str) -> int | None:
    """A ``/proc/self/status`` field in KiB (``VmRSS``, ``VmHWM``), or None where absent."""
    try:
        with open("/proc/self/status") as handle:
            for line in handle:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def device_name(device: torch.device) -> str:
    """The GPU's name, or the CPU's as far as Python can tell."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return platform.processor() or platform.machine()


def machine_facts(device: torch.device) -> dict[str, Any]:
    """Where a benchmark ran: device, its name, CPU count, torch threads and version."""
    return {
        "device": device.type,
        "device_name": device_name(device),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }
