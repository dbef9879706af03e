"""resnet_repro: a test-first reproducibility harness for ResNet v1/v2 on CIFAR-10."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("resnet_repro")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0+unknown"
