"""Schedules: steps per epoch, total steps and the learning-rate factor at known steps."""

import math

import pytest

from resnet_repro.config import make_config
from resnet_repro.schedule import lr_factor, steps_per_epoch, total_steps


def test_paper_schedule_warmup_and_milestones():
    c = make_config("paper", resnet_size=18)
    assert lr_factor(c, 0, 64_000) * c.lr == pytest.approx(0.01)
    assert lr_factor(c, 399, 64_000) * c.lr == pytest.approx(0.01)
    assert lr_factor(c, 400, 64_000) * c.lr == pytest.approx(0.1)
    assert lr_factor(c, 32_000, 64_000) * c.lr == pytest.approx(0.01)
    assert lr_factor(c, 48_000, 64_000) * c.lr == pytest.approx(0.001)


@pytest.mark.parametrize(
    ("schedule", "expected"),
    [
        # cosine: 0.5 (1 + cos(pi t / T))
        ("cosine", {0: 1.0, 250: 0.5 * (1 + math.cos(math.pi / 4)), 500: 0.5, 1000: 0.0}),
        # onecycle: 0.1 -> 1 linearly over the first 20%, then linearly to 0
        ("onecycle", {0: 0.1, 100: 0.55, 200: 1.0, 600: 0.5, 1000: 0.0}),
        ("constant", {0: 1.0, 999: 1.0}),
    ],
)
def test_schedule_shapes_at_known_steps(schedule, expected):
    c = make_config("paper", schedule=schedule, warmup_iters=0)
    for step, factor in expected.items():
        assert lr_factor(c, step, 1000) == pytest.approx(factor, abs=1e-12), (schedule, step)


def test_steps_per_epoch_keeps_a_remainder_of_two_images_per_rank():
    assert steps_per_epoch(50_000, 128) == 391  # 390 full batches + 80 images
    assert steps_per_epoch(45_000, 128) == 352  # 351 + 72
    # The seed's skeleton drops the remainder: 351 steps of 45k images, 390 of 50k.
    assert steps_per_epoch(45_000, 128, drop_last=True) == 351
    assert steps_per_epoch(50_000, 128, drop_last=True) == 390
    assert steps_per_epoch(256, 128, drop_last=True) == 2
    assert steps_per_epoch(256, 128) == 2
    assert steps_per_epoch(257, 128) == 2  # a batch of one would break BN
    assert steps_per_epoch(258, 128) == 3
    assert steps_per_epoch(259, 128, world_size=2) == 2  # 3 images: one rank would get 1
    assert steps_per_epoch(260, 128, world_size=2) == 3


def test_total_steps_is_epochs_capped_by_max_iters():
    paper = make_config("paper")
    assert total_steps(paper, 50_000) == 64_000  # 164 epochs of 391 = 64,124, capped
    assert total_steps(make_config("paper", max_iters=0), 50_000) == 164 * 391
    # The seed's: 200 epochs of 351 steps on 45k images, then 10 of 390 on all 50k.
    assert total_steps(make_config("seed"), 45_000) == 200 * 351  # no continuation images given
    assert total_steps(make_config("seed"), 45_000, n_continue=50_000) == 200 * 351 + 10 * 390
    assert total_steps(make_config("paper", epochs=2, max_iters=0), 1000, world_size=2) == 16
    # 259 = 2 x 128 + 3: a third step with one rank, not with two (a rank would get 1 image).
    two_epochs = make_config("paper", epochs=2, max_iters=0)
    assert total_steps(two_epochs, 259) == 6 and total_steps(two_epochs, 259, world_size=2) == 4


def test_multistep_without_warm_up_and_lr_decay():
    c = make_config("paper", resnet_size=3, milestones=[10, 20], lr_decay=0.5)
    assert [lr_factor(c, s, 100) for s in (0, 9, 10, 19, 20, 99)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
