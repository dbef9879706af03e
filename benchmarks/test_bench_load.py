"""Loading: ``load_cifar10`` from the archive against from its decoded ``.npy`` cache."""

import numpy as np

from resnet_repro.archive_writer import write_fake_cifar10
from resnet_repro.data import load_cifar10


def test_load_cache_vs_archive(compare, tmp_path, request):
    per_batch = 200 if request.config.getoption("benchmark_disable") else 10_000
    archive = write_fake_cifar10(
        tmp_path / "fake.tar.gz", train_per_batch=per_batch, test_size=per_batch, seed=0
    )
    cache = tmp_path / "cache"
    load_cifar10(archive, cache_dir=cache)

    def from_cache():
        x_train, *_ = load_cifar10(archive, cache_dir=cache)
        return np.asarray(x_train[-1]).sum()  # touch the data, not only the mapping

    ratio = compare(
        "load_cache",
        from_cache,
        lambda: load_cifar10(archive),
        device="cpu",
        images=6 * per_batch,
        rounds=3,
    )
    if ratio is not None:  # measured 2,010-2,838x on the 2-core CPU (benchmarks/results)
        assert ratio >= 100, f"the .npy cache is only {ratio:.0f}x faster than decoding"
