"""The DVC stages' entry points that need the engine: a run's config from ``params.yaml``, the
train stage (each seed into its folder, continued or restarted by ``decide_resume``) and a
run's metrics for the comparison. What runs the study around them is ``study.py``.

``params.yaml`` holds ``data`` (where the archive comes from), ``train_defaults`` (config
fields shared by every run), ``runs`` (one entry per run: config fields plus
``eval_checkpoints``) and ``compare`` (the golden tables). ``dvc.yaml`` fans out over ``runs``
so that a change to one run's entry re-runs that run and what depends on it, nothing else.
"""

from __future__ import annotations

import csv
import json
import statistics
from pathlib import Path
from typing import Any

from resnet_repro.checkpoint import code_digest, decide_resume
from resnet_repro.config import (
    DEFAULT_RECIPE,
    ConfigError,
    TrainConfig,
    load_params,
    make_config,
)
from resnet_repro.data import load_splits
from resnet_repro.evaluate import (
    checkpoint_paths,
    load_eval_data,
    loss_and_accuracy,
    parse_checkpoints,
)
from resnet_repro.golden import METRICS
from resnet_repro.run_folder import RunFolder, read_history
from resnet_repro.runtime import resolve_device
from resnet_repro.study import run_seeds, seed_folder, seed_folders
from resnet_repro.train import Trainer

# Keys of a run entry that are the pipeline's, not TrainConfig fields.
PIPELINE_KEYS = ("eval_checkpoints", "seeds")


def train_grid_run(params_path: str | Path, run: str, out: str | Path) -> None:
    """The train stage of ``run``: one folder per seed, ``out/seed-<s>``.

    The stage's output persists across ``dvc repro`` (``persist: true``), so that a killed
    pipeline continues where it stopped instead of restarting a 200-epoch run. A seed folder is
    continued only when its ``last.ckpt`` was written with the same config, the same code and
    the same data, which is exactly the case where DVC itself would have nothing new to train;
    otherwise DVC re-runs the stage because something changed, and the folder starts afresh, as
    DVC does for a stage whose output does not persist.
    """
    out = Path(out)
    params = load_params(params_path)
    seeds = run_seeds(params, params_path, run)
    configs = [run_config(params_path, run, seed) for seed in seeds]
    # Fail now, not after hundreds of epochs, if the evaluate stage could not read the entry.
    try:
        parse_checkpoints(params["runs"][run].get("eval_checkpoints"))
    except ConfigError as e:
        raise ConfigError(f"{params_path}: run {run}: eval_checkpoints: {e}") from e
    for seed, config in zip(seeds, configs, strict=True):
        folder = RunFolder.of_run(seed_folder(out, seed), config)
        existed = folder.path.exists()
        with folder.locked():
            splits = load_splits(config)
            point = folder.resume_point()
            resume = decide_resume(point, config, splits.source_md5, code_digest(), exact=True)
            if resume.verb == "continue":
                epoch = point.state["epoch"]
                print(f"{folder.path}: continuing the interrupted run from epoch {epoch}")
            else:
                if existed:
                    folder.clear(resume.reason)
                point = None
            Trainer(config, folder, splits=splits).fit(point)


def run_config(params_path: str | Path, run: str, seed: int = 0) -> TrainConfig:
    """``train_defaults`` overlaid with ``runs[run]`` (pipeline-only keys removed), with the
    data folder of ``data.dest`` and ``seed``, through the run's recipe."""
    params = load_params(params_path)
    if run not in params["runs"]:
        raise ConfigError(f"{params_path}: no run {run!r}; runs are {sorted(params['runs'])}")
    defaults, entry = params.get("train_defaults") or {}, params["runs"][run]
    for name, value in (("train_defaults", defaults), (f"runs.{run}", entry)):
        if not isinstance(value, dict):
            raise ConfigError(
                f"{params_path}: {name} must be a mapping of settings (key: value lines), "
                f"got {type(value).__name__} {value!r}"
            )
    values = {**defaults, **entry}
    for key in PIPELINE_KEYS:
        values.pop(key, None)
    values["data"] = str(params.get("data", {}).get("dest", "data"))
    values["seed"] = seed
    recipe = values.pop("recipe", DEFAULT_RECIPE)
    try:
        return make_config(recipe, **values)
    except ConfigError as e:
        raise ConfigError(f"{params_path}: run {run}: {e}") from e


def seed_metrics(run: Path, epochs: list[int], device: str) -> dict[str, Any]:
    """One trained run directory: validation accuracy of each listed checkpoint, test accuracy
    of the chosen one (best validation, latest on ties) and of the final one. A run without a
    validation split (the papers' 50k-image runs) chooses the final checkpoint, as the papers
    reported it, and has no validation metrics (None).

    A run with ``continue_epochs`` (the seed's protocol) also has the test accuracy of the model
    it ends with, after those epochs on every training image (``test_acc_continued``: what the
    seed tested, its Figs. 10-11), and the medians over those epochs of their duration
    (``continued_epoch_seconds``: the seed's "Duration" lines) and of their last step's loss
    (``continued_last_batch_loss``: its "Loss" lines); None for other runs."""
    paths = dict(zip(epochs, checkpoint_paths(run, epochs), strict=True))
    expected = TrainConfig.load(run / "config.yaml")
    continued = None
    if expected.continue_epochs:
        (continued,) = checkpoint_paths(run, [expected.last_epoch])
    data, md5 = load_eval_data(run, None, resolve_device(device), ("valid", "test"))
    final = max(epochs)
    if len(data["valid"][1]):
        valid = {
            e: loss_and_accuracy(p, *data["valid"], expected=expected)[1] for e, p in paths.items()
        }
        chosen = max(epochs, key=lambda e: (valid[e], e))
    else:
        valid, chosen = {e: None for e in epochs}, final
    test_chosen = loss_and_accuracy(paths[chosen], *data["test"], expected=expected)[1]
    test_final = (
        test_chosen
        if final == chosen
        else loss_and_accuracy(paths[final], *data["test"], expected=expected)[1]
    )
    after = [h for h in read_history(run / "history.jsonl") if h["epoch"] > expected.epochs]
    continued_seconds = [h["train_seconds"] for h in after]
    # Histories written before it was recorded have no last step's loss.
    continued_losses = [h["last_batch_loss"] for h in after if "last_batch_loss" in h]
    return {
        "valid_acc_final": valid[final],
        "valid_acc_chosen": valid[chosen],
        "test_acc_chosen": test_chosen,
        "test_acc_final": test_final,
        "test_acc_continued": (
            None
            if continued is None
            else loss_and_accuracy(continued, *data["test"], expected=expected)[1]
        ),
        "continued_epoch_seconds": (
            statistics.median(continued_seconds) if continued_seconds else None
        ),
        "continued_last_batch_loss": (
            statistics.median(continued_losses) if continued_losses else None
        ),
        "chosen_epoch": chosen,
        "final_epoch": final,
        "valid_acc": {str(e): a for e, a in valid.items()},
        "data_md5": md5,
        "eval_device_type": resolve_device(device).type,  # verify re-evaluates exactly on it
        "rehearsal": expected.is_rehearsal,
    }


def run_metrics(
    run_dir: str | Path, checkpoints: str, out_dir: str | Path, *, device: str = "auto"
) -> dict[str, Any]:
    """Metrics of a run for the comparison, written to ``out_dir/metrics.json``, and its
    learning curves to ``out_dir/history.csv``.

    A run trained with several seeds holds one ``seed-<s>`` folder per seed: each summary
    metric is then the mean over seeds, with ``<metric>_std`` (sample standard deviation),
    ``<metric>_median`` and the per-seed values under ``seeds``; the curves are per-epoch
    means. A metric the run does not have (no validation split) is None.
    """
    run, out = Path(run_dir), Path(out_dir)
    epochs = parse_checkpoints(checkpoints)
    folders = seed_folders(run)
    per_seed = {seed: seed_metrics(p, epochs, device) for seed, p in folders.items()}
    if "" in per_seed:  # a run folder without seed folders
        metrics = per_seed.popitem()[1]
    else:
        metrics = {}
        for k in METRICS:
            values = [m[k] for m in per_seed.values()]
            if None in values:
                metrics[k] = None
                continue
            metrics[k] = statistics.fmean(values)
            if len(values) > 1:
                metrics[f"{k}_std"] = statistics.stdev(values)
                metrics[f"{k}_median"] = statistics.median(values)
        # Each validated checkpoint's accuracy, the mean over seeds (golden cells valid_acc@N).
        metrics["valid_acc"] = {
            epoch: mean_or_none([m["valid_acc"][epoch] for m in per_seed.values()])
            for epoch in next(iter(per_seed.values()))["valid_acc"]
        }
        metrics["seeds"] = per_seed
        metrics["rehearsal"] = any(m["rehearsal"] for m in per_seed.values())
    out.mkdir(parents=True, exist_ok=True)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    histories = [read_history(p / "history.jsonl") for p in folders.values()]
    if not all(histories):
        raise ConfigError(f"{run}: a seed has no training history (history.jsonl)")
    rows = [
        {k: mean_or_none([h[i][k] for h in histories]) for k in histories[0][i]}
        for i in range(min(len(h) for h in histories))
    ]
    with open(out / "history.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return metrics


def mean_or_none(values: list[float | None]) -> float | None:
    """The mean, or None where a value is missing (an epoch without validation)."""
    return None if None in values else statistics.fmean(values)
