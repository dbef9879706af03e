"""Does a refactoring keep the bits? Trains the same four tiny runs (paper v1 with BN groups,
paper v2, seed v1 and v2 with a continued epoch) with the code of COMMIT and with the working
tree, each in its own process, and compares what the last checkpoints hold: the weights, the
optimizer state and the generator states, in the order the model stores them (parameter names
may change in a refactoring; their values may not).

    python .ci/same_bits.py 102cfaa      # exit 1 when any run differs
"""

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RUNS = {
    "paper-v1": {"recipe": "paper", "version": 1, "bn_group_images": 16},
    "paper-v2": {"recipe": "paper", "version": 2},
    "seed-v1": {"recipe": "seed", "version": 1, "continue_epochs": 1},
    "seed-v2": {"recipe": "seed", "version": 2, "continue_epochs": 1},
}
# Run in a child process whose sys.path starts at the code under test.
CHILD = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[1])
from resnet_repro.archive_writer import write_fake_cifar10
from resnet_repro.config import make_config
from resnet_repro.train import train
out, runs = Path(sys.argv[2]), __import__("json").loads(sys.argv[3])
archive = write_fake_cifar10(out / "a.tar.gz", train_per_batch=60, test_size=20, seed=0)
for name, settings in runs.items():
    settings = dict(settings)
    config = make_config(settings.pop("recipe"), resnet_size=1, epochs=2, batch_size=32,
        data=str(archive), valid_fraction=0.2, device="cpu", checkpoint_every=1, **settings)
    train(config, out / name)
"""


def state_digest(path: Path) -> str:
    import torch

    state = torch.load(path, weights_only=True)
    digest = hashlib.sha256()
    tensors = [*state["model"].values(), state["rng"]["order"], state["rng"]["augment"]]
    for group in state["optimizer"]["state"].values():
        tensors += [v for v in group.values() if torch.is_tensor(v)]
    for tensor in tensors:
        digest.update(tensor.cpu().numpy().tobytes())
    return digest.hexdigest()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("commit", help="the commit to compare the working tree with")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        old = Path(tmp) / "old"
        subprocess.run(["git", "clone", "-q", str(REPO), str(old)], check=True)
        subprocess.run(["git", "checkout", "-q", args.commit], cwd=old, check=True)
        digests = {}
        for label, code in (("old", old), ("new", REPO)):
            out = Path(tmp) / f"runs-{label}"
            subprocess.run(
                [sys.executable, "-c", CHILD, str(code), str(out), json.dumps(RUNS)], check=True
            )
            digests[label] = {run: state_digest(out / run / "last.ckpt") for run in RUNS}
    differ = [run for run in RUNS if digests["old"][run] != digests["new"][run]]
    for run in RUNS:
        same = "same bits" if run not in differ else "DIFFERENT"
        print(f"{run}: {same} ({digests['new'][run][:16]})")
    return 1 if differ else 0


if __name__ == "__main__":
    sys.exit(main())
