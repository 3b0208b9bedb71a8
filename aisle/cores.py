"""The cores this process may use: its CPU affinity, capped by a cgroup CPU quota.

A container limited to 2 CPUs on a 64-core host still sees 64 cores in its affinity mask, and
runtimes that size their pools from it (ONNX Runtime, OpenMP) start 64 busy threads that the
kernel then throttles. Worker pools, a local Ray and the service's executor read the count here;
``cap_thread_pools`` sizes OpenMP's (torch's and faiss's) to it.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

# Where the kernel says which cgroups this process is in, and where the hierarchies are mounted.
MEMBERSHIP = Path("/proc/self/cgroup")
CGROUP_ROOT = Path("/sys/fs/cgroup")


def available_cores() -> int:
    """The cores this process may run on, no more than its CPU quota allows, at least one."""
    return _capped(cpu_quota())


def runtime_threads() -> int:
    """Threads for a runtime's own pool: 0, its default (ONNX Runtime takes the physical
    cores), unless a CPU quota is set, which runtimes do not read; then ``available_cores``."""
    quota = cpu_quota()
    return _capped(quota) if quota is not None else 0


# What OpenMP (torch's and faiss's pools) and the BLAS libraries read when they start.
POOL_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# The count ``cap_thread_pools`` set (0: none), so that a second call and the threads started
# later apply it again rather than mistake it for the user's.
_capped_to = 0


def cap_thread_pools() -> int:
    """Under a CPU quota, size torch's and faiss's OpenMP pools to it: the pool variables for
    runtimes not loaded yet (the CLI loads neither before a command runs), and torch's setter
    (the whole process) and faiss's (this thread; see ``cap_this_thread``) for those already
    loaded. A count the user set in ``OMP_NUM_THREADS`` is kept. The threads set; 0: none."""
    global _capped_to
    if not _capped_to:
        threads = runtime_threads()
        if not threads or "OMP_NUM_THREADS" in os.environ:
            return 0
        for name in POOL_VARIABLES:
            os.environ.setdefault(name, str(threads))
        _capped_to = threads
    if (torch := sys.modules.get("torch")) is not None:
        torch.set_num_threads(_capped_to)
    cap_this_thread()
    return _capped_to


def cap_this_thread() -> None:
    """faiss's setter reaches only the thread that calls it, so a faiss loaded before
    ``cap_thread_pools`` ran still searches from other threads with the host's cores: a
    thread pool that searches passes this as its ``initializer``."""
    if _capped_to and (faiss := sys.modules.get("faiss")) is not None:
        faiss.omp_set_num_threads(_capped_to)


def _capped(quota: float | None) -> int:
    """The affinity's cores, capped by ``quota`` CPUs. A quota of 1.5 counts 2: the workers
    then use all of it, throttled now and then, where 1 would leave a third of it unused."""
    if hasattr(os, "sched_getaffinity"):
        cores = len(os.sched_getaffinity(0))
    else:
        cores = os.cpu_count() or 1
    return max(1, min(cores, math.ceil(quota))) if quota is not None else cores


def cpu_quota() -> float | None:
    """The CPUs a second this process's cgroups allow (quota / period, the tightest along the
    path from its cgroup up to the hierarchy's root), or None when none is set or it cannot
    be read. cgroup v2 (``cpu.max``) and v1 (``cpu.cfs_quota_us`` over ``cpu.cfs_period_us``)."""
    try:
        lines = MEMBERSHIP.read_text().splitlines()
    except OSError:
        return None
    quotas: list[float] = []
    for line in lines:
        fields = line.split(":", 2)
        if len(fields) != 3:
            continue
        _, controllers, path = fields
        if controllers == "":  # v2: one unified hierarchy
            quotas += _walk_up(CGROUP_ROOT, path, _v2_quota)
        elif "cpu" in controllers.split(","):  # v1: the cpu controller's own hierarchy
            for mount in (CGROUP_ROOT / controllers, CGROUP_ROOT / "cpu",
                          CGROUP_ROOT / "cpu,cpuacct"):
                if mount.is_dir():
                    quotas += _walk_up(mount, path, _v1_quota)
                    break
    return min(quotas) if quotas else None


def _walk_up(mount: Path, path: str, read: Callable[[Path], float | None]) -> list[float]:
    """``read`` of each cgroup directory from ``mount``/``path`` up to ``mount``. A container
    whose view of the hierarchy starts at its own cgroup does not find ``path`` there and
    reads ``mount``, its own cgroup."""
    here = mount / path.strip("/")
    if not here.is_dir():
        here = mount
    found = []
    while True:
        quota = read(here)
        if quota is not None:
            found.append(quota)
        if here == mount or mount not in here.parents:
            return found
        here = here.parent


def _v2_quota(cgroup: Path) -> float | None:
    """``cpu.max`` holds "QUOTA PERIOD", QUOTA "max" for none."""
    try:
        quota, period = (cgroup / "cpu.max").read_text().split()[:2]
        return None if quota == "max" else _ratio(quota, period)
    except (OSError, ValueError):
        return None


def _v1_quota(cgroup: Path) -> float | None:
    """``cpu.cfs_quota_us`` (-1 for none) over ``cpu.cfs_period_us``."""
    try:
        return _ratio((cgroup / "cpu.cfs_quota_us").read_text(),
                      (cgroup / "cpu.cfs_period_us").read_text())
    except (OSError, ValueError):
        return None


def _ratio(quota: str, period: str) -> float | None:
    q, p = int(quota), int(period)
    return q / p if q > 0 and p > 0 else None
