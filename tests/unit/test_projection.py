"""The grid's projected duration: the arithmetic on given step times, one measurement per
distinct network, and a real measurement on this machine."""

import contextlib
import types
from pathlib import Path

import pytest

from resnet_repro import projection, step_graph
from resnet_repro.cli import main
from resnet_repro.config import make_config
from resnet_repro.projection import Timing, measure, project_grid

PARAMS = Path(__file__).resolve().parents[2] / "params.yaml"


def test_projection_is_seeds_times_steps_and_validation(monkeypatch):
    measured = []

    def fake_measure(config, *, steps, warmup):
        measured.append(tuple(getattr(config, f) for f in projection.SPEED_FIELDS))
        return Timing(step_s=0.01, eval_image_s=0.001)

    monkeypatch.setattr(projection, "measure", fake_measure)
    got = {p.run: p for p in project_grid(PARAMS, echo=False)}
    # He et al.: 5 seeds x 64k steps, no validation split.
    p = got["paper-v1-n18"]
    assert (p.seeds, p.steps, p.epochs, p.valid_images) == (5, 64_000, 164, 0)
    assert p.seconds == pytest.approx(5 * 64_000 * 0.01)
    # The seed's: 200 epochs of 351 steps on 45k images (the last 72 dropped, as its
    # skeleton did), 5k validated after each epoch, then 10 epochs of 390 steps on all 50k,
    # not validated.
    s = got["seed-v1-n8"]
    assert (s.seeds, s.steps, s.epochs, s.valid_images) == (1, 70_200 + 3_900, 210, 5_000)
    assert s.seconds == pytest.approx((70_200 + 3_900) * 0.01 + 200 * 5_000 * 0.001)
    # One measurement per distinct network and speed setting, not per run: paper-valid-v1-n3
    # trains the same network as paper-v1-n3.
    assert len(measured) == len(set(measured)) == len(got) - 1


def test_measure_times_the_real_loop_on_this_machine():
    config = make_config(
        "paper", version=1, resnet_size=1, batch_size=16, device="cpu", eval_batch_size=32
    )
    timing = measure(config, steps=2, warmup=1)
    assert 0 < timing.step_s < 30 and 0 < timing.eval_image_s < timing.step_s


def test_with_cuda_graph_the_timed_steps_are_replays(monkeypatch):
    """The eager warm-up steps and the capture happen before the clock starts, whatever
    ``warmup`` asks for; the timed steps replay the graph (an eager stand-in on the CPU)."""
    events = []

    class RecordingGraphs:
        def __init__(self, device):
            pass

        @contextlib.contextmanager
        def warmup(self):
            events.append("warmup")
            yield

        def capture(self, record):
            events.append("capture")
            return lambda: (events.append("replay"), record())

    def clock():
        events.append("clock")
        return float(len(events))

    monkeypatch.setattr(step_graph, "CudaGraphs", RecordingGraphs)
    monkeypatch.setattr(projection, "time", types.SimpleNamespace(perf_counter=clock))
    config = make_config(
        "paper", version=1, resnet_size=1, batch_size=16, device="cpu", cuda_graph=True
    )
    measure(config, steps=2, warmup=1)
    first_clock = events.index("clock")
    assert events[:first_clock].count("warmup") == step_graph.WARMUP_STEPS
    assert events[:first_clock].count("capture") == 1
    assert events[first_clock + 1 : first_clock + 3] == ["replay", "replay"]


def test_cli_prints_the_table_and_total(capsys):
    grid = Path(__file__).resolve().parents[2] / "pipeline" / "params-cpu.yaml"
    assert main(["project", "--params", str(grid), "--runs", "paper-v1-n1", "--steps", "2"]) == 0
    out = capsys.readouterr().out
    assert "| paper-v1-n1 | 1 | 3,750 | 6 |" in out and "Whole grid, one run at a time:" in out
