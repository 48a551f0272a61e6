"""The numerics a run's weights and estimates depend on, set by the project, not by the machine.

Float sums depend on how a kernel splits them: on torch's thread count, on the vector instruction
set its CPU kernels were dispatched to (``ATEN_CPU_CAPABILITY``: an AVX-512 machine would pick
other kernels than an AVX2 one), and on MKL's and oneDNN's choice of kernels by CPU. Measured on
the ci profile (CHANGELOG 2026-12-07): 1 thread against 2 changes 24 weight tensors by step 10;
``default`` against ``avx2`` capability changes 141.

So the project pins them:

* **environment** (:data:`PINNED_ENV`, x86-64 only): torch's CPU capability ``avx2`` (every x86
  CPU of the last decade has it), MKL's conditional numerical reproducibility at AVX2, oneDNN's
  ISA cap at AVX2. They must be in the environment before torch starts: the CLI re-executes
  itself with them (``rllc.cli``), the notebook runner passes them to its kernels, the Makefile
  exports them. A value already in the environment is replaced, with one line saying so.
* **threads** (:func:`threads`): from the profile (``train.threads``), never the machine's
  cores; a model trained in one of several processes at once (another seed, 06) gets the
  profile's share (``train.threads // seeds.processes``), whatever launches it.

:func:`numerics_record` is what a run records (``config.yaml``) and a model's identity holds
(``identity.json``: a resume under other numerics is refused). What the weights still depend on
(torch's version, a non-x86 CPU) is in ``docs/using.md``.
"""

from __future__ import annotations

import contextlib
import functools
import os
import platform
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

NUMERICS_VERSION = 1
PINNED_ENV = {
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "AVX2,STRICT",
    "ONEDNN_MAX_CPU_ISA": "AVX2",
}
FLAGS = ("avx2", "avx512f", "fma", "sse4_2")  # the CPU flags a reader needs to compare machines


def is_x86() -> bool:
    return platform.machine().lower() in ("x86_64", "amd64", "i686", "i386")


def pinned_env() -> dict[str, str]:
    """The environment the project pins on this machine (nothing on a CPU that is not x86)."""
    return dict(PINNED_ENV) if is_x86() else {}


def replaced(environ: dict[str, str] | None = None) -> dict[str, tuple[str, str]]:
    """Pinned variables the environment sets to something else: name → (found, pinned)."""
    env = os.environ if environ is None else environ
    return {k: (env[k], v) for k, v in pinned_env().items() if k in env and env[k] != v}


def apply_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """``environ`` (default: this process's) with the pinned values set; one line on stderr for
    each value that was set to something else. Only effective before torch is imported."""
    env = os.environ if environ is None else environ
    for name, (found, pinned) in replaced(env).items():
        print(f"rllc: {name}={found} in the environment replaced by {pinned} (the project's numerics; "
              f"docs/using.md)", file=sys.stderr, flush=True)
    env.update(pinned_env())
    return env


def threads(cfg: Any, name: str = "L2") -> int:
    """The torch thread count a model of ``cfg`` trains with (and a process estimates with): the
    profile's ``train.threads``, or its share of it for a model of another seed, which notebook 06
    trains ``seeds.processes`` at a time."""
    from .model_name import name_seed

    total = max(1, int(cfg.train.threads))
    return max(1, total // max(1, int(cfg.seeds.processes))) if name_seed(name) is not None else total


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """torch's intra-op thread count set to ``n`` for the block (the profile's, not the machine's)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(max(1, int(n)))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@functools.lru_cache(maxsize=1)
def cpu_info() -> dict[str, Any]:
    """Vendor, family, model, model name and the flags of :data:`FLAGS` (from /proc/cpuinfo where
    there is one; else what ``platform`` knows)."""
    info: dict[str, Any] = {"machine": platform.machine()}
    try:
        fields: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if not line.strip():
                break  # the first processor is enough
            key, _, value = line.partition(":")
            fields[key.strip()] = value.strip()
        info |= {"vendor": fields.get("vendor_id", ""), "family": fields.get("cpu family", ""),
                 "model": fields.get("model", ""), "model_name": fields.get("model name", "")}
        flags = set(fields.get("flags", "").split())
        info["flags"] = " ".join(f for f in FLAGS if f in flags)
    except OSError:
        info |= {"vendor": platform.processor(), "family": "", "model": "", "model_name": platform.processor(),
                 "flags": ""}
    return info


def torch_capability() -> str:
    """The instruction set torch dispatched its CPU kernels to in this process (e.g. AVX2)."""
    import torch

    return str(torch.backends.cpu.get_cpu_capability())


def numerics_record(n_threads: int) -> dict[str, Any]:
    """What a model's numbers depend on in this process: the pinned environment as it is, torch's
    capability and the thread count (a model's identity holds it; a resume under other numerics is
    refused). The CPU is recorded beside it (``describe``), not in it: the point of pinning is that
    two CPUs give the same weights."""
    return {"version": NUMERICS_VERSION, "threads": int(n_threads),
            "env": {k: os.environ.get(k, "") for k in PINNED_ENV}, "torch_capability": torch_capability()}


def describe(n_threads: int) -> dict[str, Any]:
    """The record and the CPU, for a run's ``config.yaml`` and a notebook's provenance."""
    return {**numerics_record(n_threads), "cpu": cpu_info()}


def summary_line(record: dict[str, Any]) -> str:
    """One line for a provenance cell: CPU, flags, capability, threads and the pinned settings."""
    cpu = record.get("cpu", {})
    env = ", ".join(f"{k}={v or 'unset'}" for k, v in record.get("env", {}).items())
    return (f"{cpu.get('model_name', '?')} (vendor {cpu.get('vendor', '?')}, family {cpu.get('family', '?')}, "
            f"model {cpu.get('model', '?')}; flags {cpu.get('flags', '') or 'none of ' + '/'.join(FLAGS)}); "
            f"torch capability {record.get('torch_capability', '?')}; {record.get('threads', '?')} threads; {env}")
