"""Which GPU devices this machine offers the local executor, and where that answer came from.

Order of precedence (first that is set wins):
1. the executor's `gpus` config (a list of device ids),
2. `EXO_GPUS` (comma-separated ids; empty or `none` = no GPUs) - lets tests and CPU-only
   machines simulate devices,
3. `CUDA_VISIBLE_DEVICES` already set for the orchestrating process (an admin's restriction),
4. `nvidia-smi` (the driver's own list), else no GPUs.
Ids are passed to steps verbatim as `CUDA_VISIBLE_DEVICES`, so they may be indexes or UUIDs.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from exo_dagster.errors import UserError

GPUS_ENV = "EXO_GPUS"
DEVICE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$")
NO_GPUS = ("", "none", "-1")


class GpuConfigError(UserError, ValueError):
    """A device list that cannot be right (bad id, duplicate)."""


@dataclass(frozen=True)
class Devices:
    """The devices the executor hands out, and a human-readable source for error messages."""

    ids: tuple[str, ...]
    source: str

    def __len__(self) -> int:
        return len(self.ids)

    def describe(self) -> str:
        shown = ", ".join(self.ids) if self.ids else "none"
        return f"{len(self.ids)} GPU(s) [{shown}] from {self.source}"


def parse_ids(text: str, source: str) -> tuple[str, ...]:
    """`"0,1"` -> ("0", "1"); empty / `none` -> (); rejects junk and duplicates."""
    if text.strip().lower() in NO_GPUS:
        return ()
    ids = tuple(part.strip() for part in text.split(","))
    return check_ids(ids, source)


def check_ids(ids: Sequence[str], source: str) -> tuple[str, ...]:
    out = tuple(str(i).strip() for i in ids)
    for device in out:
        if not DEVICE_ID.match(device):
            raise GpuConfigError(f"{source}: {device!r} is not a GPU device id (use indexes like 0,1 or GPU UUIDs)")
    dupes = sorted({d for d in out if out.count(d) > 1})
    if dupes:
        raise GpuConfigError(f"{source}: device(s) {', '.join(dupes)} listed twice; each GPU may appear once")
    return out


def nvidia_smi_ids(timeout: float = 10.0) -> tuple[str, ...] | None:
    """Device indexes reported by the NVIDIA driver, or None when there is no usable driver."""
    exe = shutil.which("nvidia-smi")
    if not exe:
        return None
    try:
        out = subprocess.run(
            [exe, "--query-gpu=index", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return tuple(line.strip() for line in out.splitlines() if line.strip())


def detect(configured: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Devices:
    """The devices to schedule on (see the module docstring for the order)."""
    environ = os.environ if environ is None else environ
    if configured is not None:
        return Devices(check_ids(configured, "executor config `gpus`"), "executor config `gpus`")
    if GPUS_ENV in environ:
        return Devices(parse_ids(environ[GPUS_ENV], GPUS_ENV), f"{GPUS_ENV}={environ[GPUS_ENV]!r}")
    if "CUDA_VISIBLE_DEVICES" in environ:
        value = environ["CUDA_VISIBLE_DEVICES"]
        return Devices(parse_ids(value, "CUDA_VISIBLE_DEVICES"), f"CUDA_VISIBLE_DEVICES={value!r}")
    found = nvidia_smi_ids()
    if found is None:
        return Devices((), "detection (no nvidia-smi / NVIDIA driver on this machine)")
    return Devices(check_ids(found, "nvidia-smi"), "nvidia-smi")
