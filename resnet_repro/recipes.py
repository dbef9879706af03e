"""The recipes: each a named set of every recipe field's value, with the source of each value
beside it. A recipe is applied before the user's overrides (``config.make_config``):

* ``seed``: the seed report's protocol, quirks included: Adam, a constant learning rate, 200
  epochs on the first 45,000 training images with checkpoints every 10 (validated at 160-200),
  then 10 more epochs on all 50,000 from the epoch-200 model, which is the model tested (its
  Figs. 10-11); BN momentum argument 0.997 where its ``batch_norm_relu_layer`` was used (Fig. 4);
  PyTorch's default initialization, as its code ran. Assumptions, each marked ASSUMPTION in
  ``RECIPES`` with the other reading: lr 1e-3, weight decay 0, the 3x3 bottleneck stride, the
  0.997 momentum in v2's output layer (and batch 128, the skeleton's default).
* ``paper``: He et al. 2015, Sec. 4.2 (SGD momentum 0.9, weight decay 1e-4, batch 128, lr 0.1
  divided by 10 at 32k and 48k iterations, stop at 64k iterations; lr 0.01 for the first 400
  iterations when depth >= 110; identity shortcuts with zero padding; per-pixel mean
  subtracted; BN statistics over 64 images, as on the paper's two GPUs; all 50,000 training
  images, the final model tested); v2 as the authors' released resnet-pre-act.lua (the first
  1x1 convolution of a downsampling bottleneck strides; no BN on the projection shortcut).
* ``paper-valid``: the same on the 45k/5k split, for validation curves.
* ``fast``: ours, beyond the seed and the papers: Nesterov SGD with a one-cycle learning rate,
  label smoothing 0.1, batch 512, 40 epochs, bf16 autocast, channels_last and torch.compile.
  What it reaches, and how fast, is in docs/measurements.md.
"""

from __future__ import annotations

from typing import Any

# Each recipe sets every field of RECIPE_FIELDS (a test holds this), so a recipe reads
# completely in one place and no value comes from another recipe or a hidden rule.
RECIPES: dict[str, dict[str, Any]] = {
    # The seed report's protocol, quirks included. "Fig." is a figure of the seed report
    # (../shared/seed/resnet-cifar10-assignment-report.txt); "skeleton" is the assignment's
    # main.py/NetWork.py/Model.py that the report's code completes.
    "seed": {
        "v1_shortcut": "B",  # 1x1 convolution + BN where the shape changes (Fig. 6)
        # Fig. 4: batch_norm_relu_layer's default momentum=0.997, TensorFlow's decay passed as
        # PyTorch's momentum. The skeleton's NetWork.py builds that layer after v1's first
        # convolution and in v2's output layer only; the blocks and shortcuts build
        # nn.BatchNorm2d with PyTorch's default 0.1 (Figs. 5-7). Fig. 3, the bottleneck block,
        # shows no code: assumed nn.BatchNorm2d as in Figs. 5 and 7.
        # ASSUMPTION (v2): 0.997 in v2's output layer too, as the skeleton builds it there.
        # Other reading: 0.1, since the seed's text calls batch_norm_relu_layer v1's.
        "bn_momentum": 0.1,
        "start_output_bn_momentum": 0.997,
        # Fig. 7: nn.BatchNorm2d after the projection's 1x1 convolution.
        "v2_projection_bn": True,
        # ASSUMPTION: the 3x3 convolution strides, as in TensorFlow's official ResNet that the
        # skeleton follows (Fig. 3 shows no code; Fig. 7 passes strides=1 to the first block
        # of stacks 1 and 2, a bug: the text says each stack after the first downsamples).
        # Other reading: the first 1x1, as He et al.'s released code.
        "bottleneck_stride": "3x3",
        # Neither the figures nor the skeleton's ResNet.__init__ initialize a weight: the
        # seed's code (PyTorch, nn.Conv2d throughout) ran PyTorch's defaults.
        "init": "pytorch",
        "bn_group_images": 0,  # one GPU: BN over the whole batch
        "normalization": "per_image",
        "epochs": 200,  # "200 epochs", validated at checkpoints 160-200 (Figs. 10-11)
        # The seed's test cells come from a continuation, decided from its Figs. 10-11 and the
        # skeleton it completed (the assignment's main.py and Model.py, as public copies of
        # them read; main.py lines 40-50 of those copies):
        #   model.train(x_train_new, y_train_new, 200)       # 45k images, 200 epochs
        #   model.test_or_validate(x_valid, y_valid, [160, 170, 180, 190, 200])
        #   model.train(x_train, y_train, 10)                # all 50k images, 10 epochs
        #   model.test_or_validate(x_test, y_test, [10])     # the seed's 0.8981 / 0.8729
        # - On what data: x_train, the whole training set (main.py's "re-train your model on the
        #   original train set").
        # - From which checkpoint: the same Cifar object goes on training; test_or_validate last
        #   restored model-200.ckpt, which is the 200-epoch model anyway. The first continued
        #   epoch's losses (0.0088 for v1, 0.077 for v2; Figs. 10-11) are those of a trained
        #   model, not of a restart.
        # - With which settings: the same; Model.py builds its optimizer once in __init__, so
        #   Adam's moments carry on, at the same constant learning rate; checkpoints restart
        #   at 1 (model-10.ckpt), here epoch 210.
        "continue_epochs": 10,
        "max_iters": 0,
        # Assumed: batch 128, the skeleton's default (main.py --batch_size); the report says
        # batch sizes were tried "without significant improvements" but not which was kept.
        "batch_size": 128,
        # The skeleton's Model.train: num_batches = num_samples // batch_size, so each epoch
        # drops its last 72 images (45,000 = 351 x 128 + 72; 50,000 = 390 x 128 + 80).
        "drop_last": True,
        "optimizer": "adam",  # the report: Adam
        # ASSUMPTION: lr 1e-3, torch.optim.Adam's default; neither the report nor the skeleton
        # gives one for Adam. Other reading: none sourced (the skeleton's 0.1 is SGD's); the
        # setting-variants table measures 1e-2.
        "lr": 1e-3,
        "momentum": 0.9,
        # ASSUMPTION: weight decay 0, reading "Adam eliminates the need for manual weight decay
        # adjustments" as none. Other reading: 2e-4, the skeleton's --weight_decay default
        # ("Don't forget L2 weight decay", its Model.py), passed to Adam; docs/recipes.md runs
        # the study under it as a DVC experiment.
        "weight_decay": 0.0,
        "nesterov": False,
        "schedule": "constant",
        "milestones": [],
        "lr_decay": 0.1,
        "warmup_iters": 0,
        "warmup_lr": 0.01,
        "warmup_min_depth": 0,
        "label_smoothing": 0.0,
        "precision": "fp32",
        "channels_last": False,
        "compile": False,
        "split_index": 45_000,
        "checkpoint_every": 10,
    },
    # He et al. 2015, Sec. 4.2, for its CIFAR-10 table: all 50k training images, the final
    # model at 64k iterations tested.
    "paper": {
        "v1_shortcut": "A",  # "identity shortcuts in all cases (option A)"
        "bn_momentum": 0.1,
        "start_output_bn_momentum": 0.1,
        # He et al.'s released resnet-pre-act.lua (KaimingHe/resnet-1k-layers, commit 8390a4a,
        # the "Residual Units for increasing dimensions" branch): the shortcut is a bare 1x1
        # convolution on the pre-activated input (no BN), and the first 1x1 convolution strides.
        "v2_projection_bn": False,
        "bottleneck_stride": "1x1",
        # "We initialize the weights as in [13]" (He et al. 2015, 4.2): normal, std
        # sqrt(2/n); the authors' fb.resnet.torch code takes n over the output channels
        # (ConvInit: kW*kH*nOutputPlane) and zeroes the fully connected bias.
        "init": "he",
        # "mini-batch size of 128 on two GPUs": each BN saw 64 images, whatever the world size.
        "bn_group_images": 64,
        "normalization": "pixel_mean",  # "with the per-pixel mean subtracted"
        "epochs": 164,  # 64k iterations at 391 iterations per 50k-image epoch
        "continue_epochs": 0,
        "max_iters": 64_000,
        "batch_size": 128,
        "drop_last": False,  # 64k iterations = 164 epochs of 391 (the last one of 80 images)
        "optimizer": "sgd",
        "lr": 0.1,
        "momentum": 0.9,
        "weight_decay": 1e-4,
        "nesterov": False,
        "schedule": "multistep",
        "milestones": [32_000, 48_000],
        "lr_decay": 0.1,
        # "for ResNet-110 ... 0.01 to warm up the training until the training error is below
        # 80% (about 400 iterations)": deeper nets only.
        "warmup_iters": 400,
        "warmup_lr": 0.01,
        "warmup_min_depth": 110,
        "label_smoothing": 0.0,
        "precision": "fp32",
        "channels_last": False,
        "compile": False,
        "split_index": 50_000,  # no validation split: the 45k/5k split only set the schedule
        "checkpoint_every": 10,
    },
    # Ours, beyond the seed and the papers (see the module docstring for what is measured).
    "fast": {
        "v1_shortcut": "B",
        "bn_momentum": 0.1,
        "start_output_bn_momentum": 0.1,
        "v2_projection_bn": False,
        "bottleneck_stride": "3x3",
        "init": "he",
        "bn_group_images": 0,
        "normalization": "per_image",
        "epochs": 40,
        "continue_epochs": 0,
        "max_iters": 0,
        "batch_size": 512,
        "drop_last": False,
        "optimizer": "sgd",
        "lr": 0.4,
        "momentum": 0.9,
        "weight_decay": 5e-4,
        "nesterov": True,
        "schedule": "onecycle",
        "milestones": [],
        "lr_decay": 0.1,
        "warmup_iters": 0,
        "warmup_lr": 0.01,
        "warmup_min_depth": 0,
        "label_smoothing": 0.1,
        "precision": "bf16",
        "channels_last": True,
        "compile": True,
        "split_index": 45_000,
        "checkpoint_every": 10,
    },
}
# He et al.'s recipe on the 45k/5k split the paper used to determine its schedule, for
# validation curves: 64k iterations are 182 epochs of 352.
RECIPES["paper-valid"] = {**RECIPES["paper"], "split_index": 45_000, "epochs": 182}


DEFAULT_RECIPE = "paper"
