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


def test_the_lr_of_a_step_is_the_base_lr_times_its_factor():
    from resnet_repro.schedule import get_lr

    config = make_config("paper", lr=0.2, milestones=[3], lr_decay=0.5, warmup_iters=0)
    assert [get_lr(config, s, 10) for s in (0, 2, 3)] == [0.2, 0.2, 0.1]
    cosine = make_config("paper", lr=0.2, schedule="cosine")
    assert get_lr(cosine, 5, 10) == pytest.approx(0.1)


def test_one_cycle_peaks_at_the_end_of_its_ramp():
    from resnet_repro.schedule import lr_factor

    config = make_config("paper", schedule="onecycle")
    assert lr_factor(config, 20, 100) == 1.0  # progress 0.2: the top, falling from here
    assert lr_factor(config, 0, 100) == pytest.approx(0.1)
    assert lr_factor(config, 1, 1) == 0.0
    assert lr_factor(config, 0, 0) == pytest.approx(0.1)  # no steps: progress 0


def test_a_rehearsal_caps_each_epoch_and_the_continuation_counts_its_images():
    from resnet_repro.schedule import epoch_steps, total_steps

    config = make_config("seed", batch_size=10, epochs=2, continue_epochs=1)
    assert epoch_steps(config, 100) == 10 and epoch_steps(config, 100, 2) == 10
    capped = make_config("seed", batch_size=10, limit_train_batches=3)
    assert epoch_steps(capped, 100) == 3 and epoch_steps(capped, 20) == 2
    assert total_steps(config, 100) == 20  # no continuation images given: none
    assert total_steps(config, 100, n_continue=120) == 32
    odd = make_config("seed", batch_size=10, epochs=1, continue_epochs=1, drop_last=False)
    # 3 images over 2 ranks leave one a batch of one: dropped; on one rank they are a step.
    assert total_steps(odd, 100, 2, n_continue=103) == 20
    assert total_steps(odd, 100, n_continue=103) == 21
    assert epoch_steps(odd, 103) == 11 and epoch_steps(odd, 103, 2) == 10
