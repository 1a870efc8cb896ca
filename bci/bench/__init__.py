"""Benchmarks: each writes a JSON result and a PNG a person can look at."""

import os
import platform


def machine_info() -> dict:
    """Where a benchmark ran: platform, Python, CPUs, processor."""
    return {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "processor": platform.processor(),
    }
