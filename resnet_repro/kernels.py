"""Portable CPU kernels: the pin under which the CPU-scale golden runs give the same bits on
every x86-64 CPU with AVX2 (Intel or AMD, AVX2 or AVX-512), so that one pinned table holds on
any user's or CI runner's machine.

A tiny network trained for a few epochs is chaotic: one rounding difference in one kernel moves
its final accuracy by points. By default torch picks kernels by the CPU: ATen's vectorized
kernels by instruction set, oneDNN's convolutions by instruction set and cache sizes, MKL's
GEMM by vendor and instruction set, reductions by thread count. The pin fixes each one:

* ATen's kernels at AVX2 (``ATEN_CPU_CAPABILITY``), the same code on every AVX2 CPU;
* convolutions through ATen's own im2col + GEMM instead of oneDNN or NNPACK (torch's
  ``backends.mkldnn`` and ``backends.nnpack`` flags, which no environment variable reaches:
  ``RESNET_REPRO_PORTABLE_CPU=1`` makes this package set them);
* MKL's GEMM on its vendor-independent branch (``MKL_CBWR=COMPATIBLE``, the one reproducible
  mode Intel documents for non-Intel CPUs too);
* two threads (``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``): CNR needs a fixed thread count;
* Adam's update through torch's fused CPU kernel (``optim.py``), whose square root is exact:
  ``torch.sqrt`` goes through MKL, which no setting above makes exact, and on an AMD EPYC it
  gave other bits than on an Intel Xeon (docs/measurements.md).

torch and MKL read their variables when they load, so the pin is a process's environment
(``portable_env``), set before it starts. It costs about 3x the default kernels' time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

from resnet_repro.config import ConfigError

SWITCH = "RESNET_REPRO_PORTABLE_CPU"
PORTABLE_NAME = "portable-avx2"
PORTABLE_ENV = {
    SWITCH: "1",
    "ATEN_CPU_CAPABILITY": "avx2",
    "MKL_CBWR": "COMPATIBLE",
    "OMP_NUM_THREADS": "2",
    "MKL_NUM_THREADS": "2",
}


class KernelPinError(ConfigError):
    """The process was asked for portable kernels it cannot have (e.g. a CPU without AVX2)."""


def portable_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """``base`` (default: this process's environment) with the pin for a child process."""
    return {**(os.environ if base is None else base), **PORTABLE_ENV}


def can_pin() -> bool:
    """Whether this CPU runs the pin's kernels: torch finds AVX2 (or more) here."""
    import torch

    return torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


def pinned() -> bool:
    return os.environ.get(SWITCH) == "1"


def apply_pin() -> None:
    """In a process started with ``portable_env``: turn off oneDNN and NNPACK, and check that
    the rest of the pin took effect. Does nothing in any other process."""
    if not pinned():
        return
    import torch

    torch.backends.mkldnn.enabled = False
    torch.backends.nnpack.set_flags(False)
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != "AVX2":
        raise KernelPinError(
            f"{SWITCH}=1 asks for torch's AVX2 kernels, but this process runs {capability} "
            "(a CPU without AVX2, or ATEN_CPU_CAPABILITY not set before torch loaded); compare "
            "with the five-seed table instead: python .ci/cpu_study.py pipeline --workdir W "
            "--seeds 0 1 2 3 4"
        )


def describe() -> dict[str, object]:
    """The kernels this process runs, for a run's provenance."""
    import torch

    return {
        "pin": PORTABLE_NAME if pinned() else "none (torch's defaults for this CPU)",
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "mkldnn": torch.backends.mkldnn.enabled,
        "nnpack": torch._C._get_nnpack_enabled(),
        "mkl_cbwr": os.environ.get("MKL_CBWR"),
        "threads": torch.get_num_threads(),
    }
