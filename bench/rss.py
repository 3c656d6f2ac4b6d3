"""Peak memory of a benchmark's child process, measured so that it is the child's own."""

from __future__ import annotations


def peak_rss_mib() -> float:
    """Peak RSS of this process image (VmHWM). Not ``ru_maxrss``: Linux folds the parent's peak
    into a child's ``ru_maxrss`` when the child (forked or vforked) execs, so every case would
    read at least the parent's peak."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status")
