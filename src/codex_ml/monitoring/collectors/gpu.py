"""NVIDIA GPUs through NVML (the ``pynvml`` module of nvidia-ml-py).

NVML is initialised once in ``start`` and shut down in ``stop``; device handles are kept
for the whole run. Only the GPUs this process can see are read: ``CUDA_VISIBLE_DEVICES``
is honoured in both its forms (indices ``0,2`` and UUIDs ``GPU-8a3c...``), and each GPU is
identified by its UUID. Indices in CUDA_VISIBLE_DEVICES are taken in NVML (PCI bus) order,
which is CUDA's order when ``CUDA_DEVICE_ORDER=PCI_BUS_ID`` or all GPUs are the same model;
UUIDs are unambiguous. Each NVML call is made in its own ``try``: a field the GPU does not
support (power on some boards) is reported once and left out, the others go on.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from codex_ml.monitoring.collectors import Collector, Unavailable

OFF = "GPU telemetry is off"
FROM_ENV = object()  # read CUDA_VISIBLE_DEVICES when the collector starts

Reader = Callable[[Any], dict[str, float]]


def parse_visible_devices(value: str | None) -> list[int | str] | None:
    """``CUDA_VISIBLE_DEVICES`` as CUDA reads it; None (unset) means every GPU.

    Entries are indices or ``GPU-``/``MIG-`` UUIDs (a unique prefix is enough, as in CUDA).
    Like CUDA, parsing stops at the first entry that is not valid, so ``""`` and ``"-1"``
    hide every GPU. A repeated entry is ignored.
    """
    if value is None:
        return None
    entries: list[int | str] = []
    for token in (t.strip() for t in value.split(",")):
        if token.isdigit():
            entry: int | str = int(token)
        elif token.startswith(("GPU-", "MIG-")):
            entry = token
        else:
            break
        if entry not in entries:
            entries.append(entry)
    return entries


def select_devices(entries: list[int | str] | None, uuids: list[str]) -> list[int]:
    """The NVML indices of the visible GPUs in CUDA order: ``cuda:i`` is ``result[i]``.

    ``uuids`` lists every GPU's UUID in NVML order. An index past the end or a UUID that
    matches no GPU (or several) ends the list, as it does for CUDA.
    """
    if entries is None:
        return list(range(len(uuids)))
    chosen: list[int] = []
    for entry in entries:
        if isinstance(entry, int):
            index = entry if entry < len(uuids) else None
        else:
            matches = [i for i, uuid in enumerate(uuids) if uuid.startswith(entry)]
            index = matches[0] if len(matches) == 1 else None
        if index is None:
            break
        if index not in chosen:
            chosen.append(index)
    return chosen


@dataclass
class GpuDevice:
    """One visible GPU: ``index`` as this process sees it (``cuda:<index>``)."""

    index: int
    nvml_index: int
    uuid: str
    name: str
    handle: Any


class GpuCollector(Collector):
    """A list with one row per visible GPU (see docs/system-metrics.md for the fields)."""

    name = "gpu"

    def __init__(
        self,
        pids: Callable[[], set[int]] | None = None,
        visible: Any = FROM_ENV,
    ) -> None:
        super().__init__()
        self._pids = pids or (lambda: {os.getpid()})
        self._visible = visible
        self.devices: list[GpuDevice] = []
        self.readers: dict[str, Reader] = {}
        self._failed: set[tuple[int, str]] = set()
        self._nvml: Any = None

    # -- lifecycle ------------------------------------------------------------------
    def start(self) -> None:
        try:
            import pynvml
        except ImportError as exc:
            raise Unavailable(f"{OFF} (pynvml is not installed; pip install 'codex-ml[gpu]')") from exc
        try:
            pynvml.nvmlInit()
        except Exception as exc:  # NVMLError_LibraryNotFound, DriverNotLoaded, ...
            raise Unavailable(f"{OFF} (NVML cannot start: {exc})") from exc
        self._nvml = pynvml
        try:
            self.devices = self._open_devices()
        except BaseException:
            self.stop()
            raise
        self.readers = {
            "utilization": self._utilization, "memory": self._memory, "temperature": self._temperature,
            "power": self._power, "sm_clock": self._sm_clock, "our_processes": self._our_processes,
        }  # fmt: skip

    def stop(self) -> None:
        if self._nvml is not None:
            try:
                self._nvml.nvmlShutdown()
            except Exception:
                pass  # the driver went away; nothing left to release
            self._nvml = None

    def _open_devices(self) -> list[GpuDevice]:
        nvml = self._nvml
        count = nvml.nvmlDeviceGetCount()
        if count == 0:
            raise Unavailable(f"{OFF} (NVML sees no GPU)")
        handles = [nvml.nvmlDeviceGetHandleByIndex(i) for i in range(count)]
        uuids = [_text(nvml.nvmlDeviceGetUUID(h)) for h in handles]
        visible = os.environ.get("CUDA_VISIBLE_DEVICES") if self._visible is FROM_ENV else self._visible
        chosen = select_devices(parse_visible_devices(visible), uuids)
        if not chosen:
            raise Unavailable(f"{OFF} (CUDA_VISIBLE_DEVICES={visible!r} selects none of the {count} GPUs)")
        return [GpuDevice(i, n, uuids[n], self._device_name(handles[n]), handles[n]) for i, n in enumerate(chosen)]

    def _device_name(self, handle: Any) -> str:
        try:
            return _text(self._nvml.nvmlDeviceGetName(handle))
        except Exception:
            return "unknown"

    # -- sampling -------------------------------------------------------------------
    def collect(self) -> None:
        self._data = [self._read_device(device) for device in self.devices]

    def _read_device(self, device: GpuDevice) -> dict[str, Any]:
        row: dict[str, Any] = {
            "index": device.index, "nvml_index": device.nvml_index, "uuid": device.uuid, "name": device.name,
        }  # fmt: skip
        for field, reader in self.readers.items():
            try:
                row.update(reader(device.handle))
            except Exception as exc:
                self._field_failed(device, field, exc)
        return row

    def _field_failed(self, device: GpuDevice, field: str, exc: Exception) -> None:
        if (device.index, field) not in self._failed:
            self._failed.add((device.index, field))
            why = str(exc) or type(exc).__name__
            self.warn(f"gpu {device.index} ({device.uuid}): {field} unavailable ({why}); other fields go on")

    # -- one NVML call each -----------------------------------------------------------
    def _utilization(self, handle: Any) -> dict[str, float]:
        return {"utilization_percent": self._nvml.nvmlDeviceGetUtilizationRates(handle).gpu}

    def _memory(self, handle: Any) -> dict[str, float]:
        info = self._nvml.nvmlDeviceGetMemoryInfo(handle)
        percent = round(100.0 * info.used / info.total, 1) if info.total else 0.0
        return {"memory_used_bytes": info.used, "memory_total_bytes": info.total, "memory_percent": percent}

    def _temperature(self, handle: Any) -> dict[str, float]:
        return {"temperature_c": self._nvml.nvmlDeviceGetTemperature(handle, self._nvml.NVML_TEMPERATURE_GPU)}

    def _power(self, handle: Any) -> dict[str, float]:
        return {"power_w": round(self._nvml.nvmlDeviceGetPowerUsage(handle) / 1000.0, 1)}  # NVML gives mW

    def _sm_clock(self, handle: Any) -> dict[str, float]:
        return {"sm_clock_mhz": self._nvml.nvmlDeviceGetClockInfo(handle, self._nvml.NVML_CLOCK_SM)}

    def _our_processes(self, handle: Any) -> dict[str, float]:
        ours = self._pids()
        mine = [p for p in self._nvml.nvmlDeviceGetComputeRunningProcesses(handle) if p.pid in ours]
        used = sum(p.usedGpuMemory or 0 for p in mine)  # None where NVML cannot tell
        return {"process_memory_used_bytes": used, "process_count": len(mine)}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)
