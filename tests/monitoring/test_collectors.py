"""Each collector on its own, against real psutil and the real /proc of this machine."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from codex_ml.monitoring.collectors import ProcFile, RateCollector, Unavailable, read_file
from codex_ml.monitoring.collectors import process as process_module
from codex_ml.monitoring.collectors.cpu import CpuCollector
from codex_ml.monitoring.collectors.disk import DiskCollector, is_whole_device, parse_diskstats
from codex_ml.monitoring.collectors.load import LoadCollector
from codex_ml.monitoring.collectors.memory import MemoryCollector, parse_meminfo
from codex_ml.monitoring.collectors.network import NetworkCollector, parse_net_dev
from codex_ml.monitoring.collectors.pressure import PressureCollector, parse_pressure
from codex_ml.monitoring.collectors.process import ProcessCollector, descendant_pids, parse_proc_stat

LINUX = sys.platform.startswith("linux")


def _sample(collector):
    collector.collect()
    data = collector.aggregate()
    collector.clear()
    assert collector.aggregate() is None
    return data


def _spawn(code: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", code])


def test_cpu_percent_total_and_per_core() -> None:
    collector = CpuCollector()
    collector.start()
    end = time.monotonic() + 0.1
    while time.monotonic() < end:
        pass  # keep one core busy
    data = _sample(collector)
    assert data["count"] == len(data["per_core"]) == psutil.cpu_count()
    assert 0.0 < data["percent"] <= 100.0
    assert all(0.0 <= value <= 100.0 for value in data["per_core"])


def test_memory_matches_psutil() -> None:
    data = _sample(MemoryCollector())
    memory = psutil.virtual_memory()
    assert data["total_bytes"] == memory.total
    assert abs(data["available_bytes"] - memory.available) < 0.05 * memory.total
    assert data["used_bytes"] + data["available_bytes"] == data["total_bytes"]
    assert data["swap_total_bytes"] == psutil.swap_memory().total


def test_memory_falls_back_to_psutil_without_meminfo(tmp_path: Path) -> None:
    text = b"MemTotal: 100 kB\nMemAvailable: 60 kB\nSwapTotal: 10 kB\nSwapFree: 4 kB\n"
    assert parse_meminfo(text) == {
        "total_bytes": 102400, "used_bytes": 40960, "available_bytes": 61440, "percent": 40.0,
        "swap_total_bytes": 10240, "swap_used_bytes": 6144, "swap_percent": 60.0,
    }  # fmt: skip
    assert parse_meminfo(text.replace(b"60 kB", b"0 kB")) is None  # MemAvailable 0: let psutil estimate
    collector = MemoryCollector(str(tmp_path / "missing"))
    assert _sample(collector)["total_bytes"] == psutil.virtual_memory().total


def test_load_matches_os() -> None:
    collector = LoadCollector()
    collector.start()
    data = _sample(collector)
    assert data["15m"] == pytest.approx(os.getloadavg()[2], abs=0.05)


def test_parse_pressure() -> None:
    text = "some avg10=1.25 avg60=0.40 avg300=0.10 total=123\nfull avg10=0.50 avg60=0.00 avg300=0.00 total=9\n"
    assert parse_pressure(text) == {"some_avg10": 1.25, "some_avg60": 0.40, "full_avg10": 0.50, "full_avg60": 0.0}


def test_pressure_without_psi_files_is_quietly_unavailable(tmp_path: Path) -> None:
    with pytest.raises(Unavailable) as caught:
        PressureCollector(str(tmp_path)).start()
    assert caught.value.quiet
    (tmp_path / "io").write_text("some avg10=2.00 avg60=1.00 avg300=0.00 total=5\n")
    collector = PressureCollector(str(tmp_path))
    collector.start()
    assert _sample(collector) == {"io": {"some_avg10": 2.0, "some_avg60": 1.0}}


@pytest.mark.skipif(not os.access("/proc/pressure/cpu", os.R_OK), reason="this kernel has no readable PSI files")
def test_pressure_from_this_kernel() -> None:
    collector = PressureCollector()
    collector.start()
    data = _sample(collector)
    assert 0.0 <= data["cpu"]["some_avg10"] <= 100.0


def test_rates_since_start_and_after_a_reset() -> None:
    class Counter(RateCollector):
        name = "counter"
        value = 1000

        def read_counters(self):
            return {"bytes": self.value}

    collector = Counter()
    collector.start()
    time.sleep(0.05)
    collector.value = 2000
    rate = _sample(collector)["bytes_per_s"]
    assert 1000 / 0.5 < rate < 1000 / 0.05 + 1  # since start(), about 0.05 s
    collector.value = 10  # the counter was reset
    time.sleep(0.01)
    assert _sample(collector) == {"bytes_per_s": 0.0}


def test_parse_diskstats_counts_sectors_as_512_bytes() -> None:
    text = (
        b" 254 0 vda 10 1 80 5 20 2 160 7 0 12 66 0 0 0 0 0 0\n"  # 5.5+: 20 fields
        b"   8 1 sda1 3 24 4 32\n"  # an old-style partition line
        b"   8 0 sda 1 0 8 0 2 0 16 0 0 0 0\n"  # 2.6: 14 fields
    )
    assert parse_diskstats(text) == {"vda": (10, 80 * 512, 20, 160 * 512), "sda1": (3, 24 * 512, 4, 32 * 512),
                                     "sda": (1, 8 * 512, 2, 16 * 512)}  # fmt: skip


def test_disk_rates_are_non_negative(tmp_path: Path) -> None:
    collector = DiskCollector()
    collector.start()
    (tmp_path / "blob").write_bytes(os.urandom(1 << 20))
    os.sync()
    data = _sample(collector)
    assert set(data) == {"read_bytes_per_s", "write_bytes_per_s", "read_ops_per_s", "write_ops_per_s"}
    assert all(value >= 0 for value in data.values())


@pytest.mark.skipif(not os.path.isdir("/sys/block"), reason="no /sys/block on this system")
def test_whole_devices_are_told_from_partitions() -> None:
    for name in os.listdir("/sys/block"):
        assert is_whole_device(name.replace("!", "/"))
    assert not is_whole_device("no-such-disk-p9")


def test_parse_net_dev_and_loopback_is_left_out() -> None:
    text = (
        b"Inter-|   Receive |  Transmit\n face |bytes packets ...\n"
        b"    lo: 900 9 0 0 0 0 0 0 900 9 0 0 0 0 0 0\n"
        b"  eth0: 1000 10 0 0 0 0 0 0 500 5 0 0 0 0 0 0\n"
    )
    assert parse_net_dev(text) == {"lo": (900, 9, 900, 9), "eth0": (1000, 10, 500, 5)}
    collector = NetworkCollector()
    collector.start()
    data = _sample(collector)
    assert set(data) == {"recv_bytes_per_s", "sent_bytes_per_s", "recv_packets_per_s", "sent_packets_per_s"}
    assert all(value >= 0 for value in data.values())


@pytest.mark.skipif(not LINUX, reason="/proc/<pid>/stat is Linux only")
def test_read_proc_stat_agrees_with_psutil() -> None:
    stat = parse_proc_stat(read_file(f"/proc/{os.getpid()}/stat"))
    me = psutil.Process()
    assert stat.name == me.name()
    assert stat.threads == me.num_threads()
    assert abs(stat.rss_bytes - me.memory_info().rss) < 16 << 20
    assert stat.cpu_seconds <= sum(me.cpu_times()[:2]) + 0.05


def test_descendants_include_grandchildren() -> None:
    grandparent_code = (
        "import subprocess, sys, time\n"
        "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(30)'])\n"
        "time.sleep(30)\n"
    )
    child = _spawn(grandparent_code)
    try:
        deadline = time.monotonic() + 10
        while not psutil.Process(child.pid).children() and time.monotonic() < deadline:
            time.sleep(0.05)
        grandchildren = {p.pid for p in psutil.Process(child.pid).children()}
        assert len(grandchildren) == 1
        # Other tests may leave children of this process running (a W&B service), so only
        # this test's subtree is compared exactly.
        assert set(descendant_pids(child.pid)) == grandchildren
        assert {child.pid, *grandchildren} <= set(descendant_pids(os.getpid()))
    finally:
        for proc in psutil.Process(child.pid).children(recursive=True):
            proc.kill()
        child.kill()
        child.wait()


def test_busy_children_show_cpu_after_two_samples() -> None:
    busy = [_spawn("while True: pass") for _ in range(2)]
    try:
        collector = ProcessCollector()
        collector.start()
        for _ in range(2):
            time.sleep(0.2)
            data = _sample(collector)
    finally:
        for child in busy:
            child.kill()
            child.wait()
    rows = {row["pid"]: row for row in data["processes"]}
    assert collector.pids == set(rows) >= {os.getpid()} | {c.pid for c in busy}
    for child in busy:
        assert rows[child.pid]["cpu_percent"] > 0 and rows[child.pid]["rss_bytes"] > 0
        assert rows[child.pid]["name"].startswith("python")
    assert data["count"] == len(rows)


def test_vanished_and_zombie_children_are_skipped(monkeypatch: pytest.MonkeyPatch) -> None:
    gone = _spawn("pass")
    gone.wait()  # reaped: its pid no longer exists
    zombie = _spawn("pass")
    deadline = time.monotonic() + 10
    while psutil.Process(zombie.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
        time.sleep(0.02)
    real = process_module.descendant_pids
    monkeypatch.setattr(process_module, "descendant_pids", lambda pid: [gone.pid] + real(pid))
    collector = ProcessCollector()
    collector.start()
    try:
        pids = [row["pid"] for row in _sample(collector)["processes"]]
    finally:
        zombie.wait()
    assert pids[0] == os.getpid() and gone.pid not in pids and zombie.pid not in pids


OPEN_FILES_SCRIPT = """
import sys
from codex_ml.monitoring.collectors.process import ProcessCollector

def sample(collector):
    collector.collect()
    data = collector.aggregate()
    collector.clear()
    return data["open_files"]

collector = ProcessCollector(open_files_every=3)
collector.start()
before = sample(collector)  # sample 0 refreshes
with open(sys.argv[1], "w"):
    stale = [sample(collector) for _ in range(2)]  # samples 1 and 2 reuse it
    fresh = sample(collector)  # sample 3 refreshes
print(before, *stale, fresh)
"""


def test_open_files_are_refreshed_every_nth_sample(tmp_path: Path) -> None:
    # In a fresh process: background threads of other tests open and close files in this one.
    done = subprocess.run([sys.executable, "-c", OPEN_FILES_SCRIPT, str(tmp_path / "extra")],
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0, done.stderr
    before, *stale, fresh = map(int, done.stdout.split())
    assert stale == [before, before] and fresh == before + 1


@pytest.mark.skipif(not LINUX, reason="procfs is Linux only")
def test_kept_proc_file_is_reread_and_fails_once_its_process_is_gone() -> None:
    stat = ProcFile("/proc/self/stat")
    first = parse_proc_stat(stat.read())
    sum(range(3_000_000))  # spend some CPU
    assert parse_proc_stat(stat.read()).cpu_seconds > first.cpu_seconds
    stat.close()
    child = _spawn("import time; time.sleep(0.2)")
    stat = ProcFile(f"/proc/{child.pid}/stat")
    assert parse_proc_stat(stat.read()).start_ticks > 0
    child.wait()
    assert stat.read() is None and ProcFile("/no/such/file").read() is None
