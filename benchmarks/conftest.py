"""Benchmark harness: devices, same-run reference timings, and the ratio regression check.

Absolute times drift between runs and machines, so every benchmark times a reference
workload in the same process and records the *ratio* (ours / reference speed). With
``--check`` the session fails when a ratio falls more than ``THRESHOLD`` below the baseline
stored for this machine class in ``benchmarks/baselines/<machine>.json``;
``--update-baselines`` rewrites that file from this run. Without timing
(``--benchmark-disable``) each benchmark runs once as a smoke test and records nothing.
"""

from __future__ import annotations

import json
import platform
import re
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

BASELINES = Path(__file__).parent / "baselines"
# See benchmarks/results/README.md for the measured spread of five runs that justifies it.
THRESHOLD = 0.15

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


def machine_class() -> str:
    if torch.cuda.is_available():
        name = torch.cuda.get_device_name()
    else:
        name = platform.processor() or platform.machine()
        try:
            for line in Path("/proc/cpuinfo").read_text().splitlines():
                if line.startswith("model name"):
                    name = line.split(":", 1)[1]
                    break
        except OSError:
            pass
    return re.sub(r"[^A-Za-z0-9]+", "-", name).strip("-").lower()


def pytest_addoption(parser):
    group = parser.getgroup("resnet_repro")
    group.addoption("--check", action="store_true", help="fail when a ratio regresses")
    group.addoption("--update-baselines", action="store_true", help="store this run's ratios")


RATIOS: dict[str, float] = {}


def sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def median_seconds(fn: Callable[[], object], rounds: int, device: str, warmup: int = 1) -> float:
    """Median wall time of ``fn`` over ``rounds`` calls, synchronizing the device."""
    for _ in range(warmup):
        fn()
    sync(device)
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@pytest.fixture
def record_ratio():
    """Record a speed ratio measured by a benchmark's own interleaved timing."""

    def record(name: str, device: str, ratio: float) -> None:
        RATIOS[f"{name}[{device}]"] = ratio

    return record


@pytest.fixture
def compare(benchmark):
    """Benchmark ``candidate`` with pytest-benchmark, time ``reference`` the same way in the
    same process, and record speed ratio = reference time / candidate time under ``name``."""

    def run(name, candidate, reference, *, device, images, rounds=5, warmup=1):
        def timed():
            candidate()
            sync(device)

        benchmark.pedantic(timed, rounds=rounds, warmup_rounds=warmup, iterations=1)
        if not benchmark.enabled:
            reference()
            return None
        ours = benchmark.stats.stats.median
        ref = median_seconds(reference, rounds, device, warmup)
        ratio = ref / ours
        benchmark.extra_info.update(
            images_per_s=images / ours, reference_images_per_s=images / ref, ratio=ratio
        )
        RATIOS[f"{name}[{device}]"] = ratio
        return ratio

    return run


def pytest_sessionfinish(session, exitstatus):
    config = session.config
    if not RATIOS:
        return
    path = BASELINES / f"{machine_class()}.json"
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"{k}: {v:.2f}x" for k, v in sorted(RATIOS.items())]
    if config.getoption("--update-baselines"):
        BASELINES.mkdir(exist_ok=True)
        path.write_text(json.dumps(dict(sorted(RATIOS.items())), indent=2) + "\n")
        lines.append(f"baselines written to {path}")
    if config.getoption("--check"):
        if not path.exists():
            lines.append(f"no baseline for this machine ({path.name}); run --update-baselines")
        else:
            baseline = json.loads(path.read_text())
            failed = []
            for key, ratio in sorted(RATIOS.items()):
                if key in baseline and ratio < baseline[key] * (1 - THRESHOLD):
                    failed.append(f"{key}: {ratio:.2f}x < baseline {baseline[key]:.2f}x - 15%")
            if failed:
                lines += ["REGRESSION:", *failed]
                session.exitstatus = 1
    if reporter:
        reporter.write_sep("-", "speed ratios (ours / same-run reference)")
        for line in lines:
            reporter.write_line(line)
