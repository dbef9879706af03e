"""How far the whole-step graph path drifts from the eager path on the CPU: the numbers the
README and tests/unit/test_step_graph.py quote. The graph is the tests' eager stand-in, so the
only difference measured is the fused optimizer's rounding; the setting is the tests' own.

    python .ci/graph_drift.py
"""

import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests/unit"))

import test_step_graph as setting  # noqa: E402

from resnet_repro import step_graph  # noqa: E402
from resnet_repro.archive_writer import write_fake_cifar10  # noqa: E402
from resnet_repro.train import Trainer  # noqa: E402


def main() -> None:
    step_graph.CudaGraphs = setting.EagerGraphs
    tmp = Path(tempfile.mkdtemp())
    archive = write_fake_cifar10(
        tmp / "fake.tar.gz", train_per_batch=400, test_size=100, seed=0, noise=100
    )
    print("| recipe | steps | weights apart (relative norm) | epoch losses apart (relative) |")
    print("|---|---|---|---|")
    for recipe in ("paper", "seed"):
        eager = Trainer(setting.config(archive, "cpu", recipe), tmp / f"e-{recipe}")
        graph = Trainer(
            setting.config(archive, "cpu", recipe, cuda_graph=True),
            tmp / f"g-{recipe}",
        )
        for epoch, steps in enumerate((1, 7, 17, 25, 25, 25), start=1):
            a, b = eager.train_epoch(epoch, steps), graph.train_epoch(epoch, steps)
            apart = setting.relative_distance(eager.model.state_dict(), graph.model.state_dict())
            losses = abs(a[0] - b[0]) / a[0]
            print(f"| {recipe} | {eager.global_step} | {apart:.1e} | {losses:.1e} |")


if __name__ == "__main__":
    main()
