"""CallWorkers: one-item calls spread over threads, results in order."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from aisle.towers.calls import CallWorkers, available_cores, cgroup_cpu_limit


def test_every_item_runs_once_in_order_whatever_the_workers() -> None:
    items = list(range(37))
    for n in (1, 2, 3, 50):
        workers = CallWorkers(n)
        parts = workers.map_parts(list, items)
        assert [x for part in parts for x in part] == items
        assert all(parts)  # no empty chunk
    assert CallWorkers(3).map_parts(list, [7]) == [[7]]
    assert CallWorkers(3).map_parts(list, []) == [[]]
    assert CallWorkers(0).n == available_cores() >= 1
    with pytest.raises(ValueError, match="workers must be >= 0"):
        CallWorkers(-1)


def test_the_chunks_run_on_the_workers_and_an_error_reaches_the_caller() -> None:
    seen: set[str] = set()
    started = threading.Barrier(2, timeout=10)

    def run(part: Sequence[int]) -> int:
        seen.add(threading.current_thread().name)
        if part[0] in (0, 1):
            started.wait()  # the first two chunks at once, or this times out
        return len(part)

    assert sum(CallWorkers(2).map_parts(run, list(range(8)))) == 8
    assert len(seen) == 2 and all(name.startswith("onnx-call") for name in seen)

    def fail(part: Sequence[int]) -> int:
        if 5 in part:
            raise RuntimeError("a bad item")
        return len(part)

    with pytest.raises(RuntimeError, match="a bad item"):
        CallWorkers(2).map_parts(fail, list(range(8)))


def _cgroup(root: Path, membership: str, files: dict[str, str]) -> tuple[Path, Path]:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    (root / "self").write_text(membership)
    return root / "fs", root / "self"


def test_a_cgroup_v2_quota_is_read_the_tightest_on_the_way_up(tmp_path: Path) -> None:
    fs, me = _cgroup(tmp_path, "0::/pod/app\n", {
        "fs/cpu.max": "max 100000\n",
        "fs/pod/cpu.max": "150000 100000\n",  # 1.5 CPUs for the pod
        "fs/pod/app/cpu.max": "400000 100000\n",  # 4 for the app, inside the pod's 1.5
    })
    assert cgroup_cpu_limit(fs, me) == 1.5
    (fs / "pod" / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(fs, me) == 4.0
    (fs / "pod" / "app" / "cpu.max").write_text("max 100000\n")
    assert cgroup_cpu_limit(fs, me) is None


def test_a_container_sees_its_own_cgroup_as_the_root(tmp_path: Path) -> None:
    # The host path in /proc/self/cgroup does not exist inside the container's view.
    fs, me = _cgroup(tmp_path, "0::/kubepods/burstable/pod1/abc\n",
                     {"fs/cpu.max": "200000 100000\n"})
    assert cgroup_cpu_limit(fs, me) == 2.0


def test_a_cgroup_v1_quota_and_no_quota(tmp_path: Path) -> None:
    fs, me = _cgroup(tmp_path, "4:memory:/x\n1:cpu,cpuacct:/docker/abc\n0::/\n", {
        "fs/cpu,cpuacct/docker/abc/cpu.cfs_quota_us": "50000\n",
        "fs/cpu,cpuacct/docker/abc/cpu.cfs_period_us": "100000\n",
        "fs/cpu,cpuacct/cpu.cfs_quota_us": "-1\n",
        "fs/cpu,cpuacct/cpu.cfs_period_us": "100000\n",
    })
    assert cgroup_cpu_limit(fs, me) == 0.5
    (fs / "cpu,cpuacct/docker/abc/cpu.cfs_quota_us").write_text("-1\n")
    assert cgroup_cpu_limit(fs, me) is None


def test_unreadable_or_malformed_cgroups_mean_no_limit(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(tmp_path / "none", tmp_path / "missing") is None
    fs, me = _cgroup(tmp_path, "0::/\n", {"fs/cpu.max": "lots\n"})
    assert cgroup_cpu_limit(fs, me) is None


def test_the_core_count_obeys_a_quota(monkeypatch: pytest.MonkeyPatch) -> None:
    import aisle.towers.calls as calls

    monkeypatch.setattr(calls.os, "sched_getaffinity", lambda _pid: set(range(8)),
                        raising=False)
    monkeypatch.setattr(calls, "cgroup_cpu_limit", lambda: None)
    assert available_cores() == 8
    monkeypatch.setattr(calls, "cgroup_cpu_limit", lambda: 2.5)
    assert available_cores() == 3  # a part of a CPU still gets a thread
    monkeypatch.setattr(calls, "cgroup_cpu_limit", lambda: 0.2)
    assert available_cores() == 1
    monkeypatch.setattr(calls, "cgroup_cpu_limit", lambda: 16.0)
    assert available_cores() == 8  # the quota never adds cores
    assert CallWorkers(0).n == 8
