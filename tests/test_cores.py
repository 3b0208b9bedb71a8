"""The core count: CPU affinity capped by a cgroup CPU quota (v1 and v2)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

import aisle.cores as cores
from aisle.towers.calls import CallWorkers, split_threads


@pytest.fixture
def cgroups(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty cgroup filesystem at ``tmp_path / "fs"``, this process a member of nothing."""
    (tmp_path / "fs").mkdir()
    monkeypatch.setattr(cores, "CGROUP_ROOT", tmp_path / "fs")
    monkeypatch.setattr(cores, "MEMBERSHIP", tmp_path / "self")
    return tmp_path


def _write(root: Path, membership: str, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / "fs" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "fs" / name).write_text(text)
    (root / "self").write_text(membership)


def test_a_v2_quota_is_the_tightest_on_the_way_up(cgroups: Path) -> None:
    _write(cgroups, "0::/pod/app\n", {
        "cpu.max": "max 100000\n",
        "pod/cpu.max": "150000 100000\n",  # 1.5 CPUs for the pod
        "pod/app/cpu.max": "400000 100000\n",  # 4 for the app, inside the pod's 1.5
    })
    assert cores.cpu_quota() == 1.5
    (cgroups / "fs/pod/cpu.max").write_text("max 100000\n")
    assert cores.cpu_quota() == 4.0
    (cgroups / "fs/pod/app/cpu.max").write_text("max 100000\n")
    assert cores.cpu_quota() is None


def test_a_container_sees_its_own_cgroup_as_the_root(cgroups: Path) -> None:
    # The host's path in /proc/self/cgroup does not exist in the container's view.
    _write(cgroups, "0::/kubepods/burstable/pod1/abc\n", {"cpu.max": "200000 100000\n"})
    assert cores.cpu_quota() == 2.0


def test_a_v1_quota_and_none(cgroups: Path) -> None:
    _write(cgroups, "4:memory:/x\n1:cpu,cpuacct:/docker/abc\n0::/\n", {
        "cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000\n",
        "cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
        "cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
        "cpu,cpuacct/cpu.cfs_period_us": "100000\n",
    })
    assert cores.cpu_quota() == 0.5
    (cgroups / "fs/cpu,cpuacct/docker/abc/cpu.cfs_quota_us").write_text("-1\n")
    assert cores.cpu_quota() is None


def test_unreadable_or_malformed_cgroups_mean_no_quota(cgroups: Path) -> None:
    assert cores.cpu_quota() is None  # no membership file
    _write(cgroups, "garbage\n0::/\n", {"cpu.max": "lots\n"})
    assert cores.cpu_quota() is None


def test_the_core_count_obeys_a_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cores.os, "sched_getaffinity", lambda _pid: set(range(8)),
                        raising=False)
    monkeypatch.setattr(cores, "cpu_quota", lambda: None)
    assert cores.available_cores() == 8
    assert cores.runtime_threads() == 0  # the runtime's own default
    assert split_threads(64, 0) == (0, 1) and split_threads(1, 0) == (1, 0)
    monkeypatch.setattr(cores, "cpu_quota", lambda: 2.5)
    assert cores.available_cores() == 3  # a part of a CPU still gets a thread
    assert cores.runtime_threads() == 3
    assert split_threads(64, 0) == (3, 1)  # a batched session's intra-op pool fits it
    assert split_threads(64, 2) == (2, 1)  # what was asked for, as asked
    assert CallWorkers(0).n == 3
    monkeypatch.setattr(cores, "cpu_quota", lambda: 0.2)
    assert cores.available_cores() == 1
    monkeypatch.setattr(cores, "cpu_quota", lambda: 16.0)
    assert cores.available_cores() == 8  # a quota never adds cores


def test_this_machine_counts_at_least_one_core() -> None:
    assert 1 <= cores.available_cores() <= (len(cores.os.sched_getaffinity(0))
                                            if hasattr(cores.os, "sched_getaffinity")
                                            else cores.os.cpu_count() or 1)


_POOLS = """
import os, sys, threading
from concurrent.futures import ThreadPoolExecutor
import aisle.cores as cores
cores.cpu_quota = lambda: 1.0
if sys.argv[1] == "loaded":  # torch and faiss started their pools before the cap
    import faiss, torch
capped = cores.cap_thread_pools()
print(capped, cores.cap_thread_pools(), os.environ.get("OMP_NUM_THREADS"))
import faiss, torch
seen = []
thread = threading.Thread(target=lambda: seen.append(faiss.omp_get_max_threads()))
thread.start(); thread.join()
with ThreadPoolExecutor(1, initializer=cores.cap_this_thread) as pool:  # as the service's
    in_pool = pool.submit(faiss.omp_get_max_threads).result()
print(torch.get_num_threads(), faiss.omp_get_max_threads(), seen[0], in_pool)
"""


def _pools(when: str, **env: str) -> list[str]:
    clean = {k: v for k, v in os.environ.items() if k not in cores.POOL_VARIABLES}
    done = subprocess.run([sys.executable, "-c", _POOLS, when], env={**clean, **env},
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


multicore = pytest.mark.skipif(cores.available_cores() < 2,
                               reason="a quota of one CPU changes nothing on one core")


@multicore
def test_a_quota_caps_torch_and_faiss_pools_before_they_load() -> None:
    # One CPU of quota: the pools start with one thread, in every thread.
    assert _pools("before") == ["1", "1", "1", "1", "1", "1", "1"]


@multicore
def test_a_quota_caps_pools_already_loaded_in_the_threads_that_search() -> None:
    capped, again, variable, torch, faiss, _other_thread, pool_thread = _pools("loaded")
    assert (capped, again, variable) == ("1", "1", "1")  # a second call applies it again
    assert (torch, faiss, pool_thread) == ("1", "1", "1")


@multicore
def test_a_thread_count_the_user_set_is_kept() -> None:
    fields = _pools("before", OMP_NUM_THREADS="2")
    assert fields[:3] == ["0", "0", "2"] and fields[4:] == ["2", "2", "2"]
