"""The resnet-repro command line: entry point and help."""

import subprocess
import sys

import pytest

from resnet_repro import __version__
from resnet_repro.cifar import md5_of
from resnet_repro.cli import main


def test_help_via_module_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "resnet_repro", "--help"], capture_output=True, text=True, check=True
    ).stdout
    assert "usage: resnet-repro" in out


def test_no_command_prints_help(capsys):
    assert main([]) == 0
    assert "usage: resnet-repro" in capsys.readouterr().out


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert __version__ in capsys.readouterr().out


def test_predict_prints_classes(trained_run, tmp_path, capsys):
    from PIL import Image

    image = tmp_path / "img.png"
    Image.new("RGB", (40, 24), (200, 30, 30)).save(image)
    ckpt = str(trained_run / "model-1.ckpt")
    assert main(["predict", "--checkpoint", ckpt, "--top", "2", str(image)]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith(f"{image}: ") and line.count(",") == 1
    (tmp_path / "bad.png").write_bytes(b"not an image")
    assert main(["predict", "--checkpoint", ckpt, str(tmp_path / "bad.png")]) == 1
    assert "bad.png: cannot be read as an image" in capsys.readouterr().err


def test_train_help_documents_every_option_with_default_and_choices(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "{sgd,adam}" in text and "{constant,multistep,onecycle,cosine}" in text
    assert "recipe: seed 200, paper 164, fast 40, paper-valid 182" in text  # --epochs
    assert "(default: 0)" in text  # --seed
    assert "--allow-changes" in text
    # In groups by section of the config: the network, the optimizer, the data, the run.
    sections = [
        "the network:",
        "the optimizer, its schedule and the run's length:",
        "the data:",
        "the run: recipe, seed, device and kernels, checkpoints:",
    ]
    starts = [text.index(title) for title in sections]
    assert starts == sorted(starts)
    network, optimizer, data, run = (
        text[a:b] for a, b in zip(starts, [*starts[1:], len(text)], strict=True)
    )
    assert "--resnet-size" in network and "--resnet-size" not in optimizer
    assert "--lr" in optimizer and "--epochs" in optimizer and "--split-index" in data
    assert "--device" in run and "--recipe" in run
    # Each option says what a resume makes of it.
    assert "paper-valid 'A'; a checkpoint fits only its value)" in network  # --v1-shortcut
    assert "(default: 'auto'; --resume may change it)" in run  # --device
    assert "unless the schedule depends on it)" in optimizer  # --epochs


def test_program_version_does_not_swallow_the_architecture_flag(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version", "1", "train", "--out", "x"])
    assert exit_.value.code == 2
    assert "resnet-repro train --resnet-version 1" in capsys.readouterr().err


def test_the_network_version_old_spelling_works_with_a_note(capsys, tmp_path):
    """--resnet-version is the network's; --version after the command still sets it."""
    from resnet_repro.cli import build_parser

    for spelling in ("--resnet-version", "--version"):
        assert build_parser().parse_args(["train", spelling, "2", "--out", "x"]).version == 2
        args = ["train", spelling, "2", "--out", str(tmp_path / "x"), "--data", "none"]
        assert main(args) == 1
        err = capsys.readouterr().err
        assert "resnet-repro train: error: none: no such file or folder" in err
        assert ("is spelled --resnet-version now" in err) == (spelling == "--version")


def test_errors_name_the_command_that_failed(capsys, tmp_path):
    (tmp_path / "params.yaml").write_text("runs:\n  r: {}\n")
    assert main(["stage", "train-many", "--repo", str(tmp_path), "--runs", "nope"]) == 1
    assert capsys.readouterr().err.startswith("resnet-repro stage train-many: error: ")


def files_of(folder):
    return {p.relative_to(folder): p.read_bytes() for p in folder.rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def trained_run(fake_archive, tmp_path_factory):
    """A finished 1-epoch run, for bad inputs aimed at an existing run."""
    from resnet_repro.config import make_config
    from resnet_repro.train import train

    run = tmp_path_factory.mktemp("bad-inputs") / "run"
    config = make_config(
        "paper",
        version=1,
        resnet_size=1,
        epochs=1,
        batch_size=32,
        data=str(fake_archive),
        valid_fraction=0.2,
        device="cpu",
    )
    train(config, run)
    return run


# One row per user mistake: the command (with {archive}, {run}, {tmp} filled in), its exit
# status, a fragment of the one-line error, and whether the run folder must stay unchanged.
BAD_INPUTS = [
    ("train --out {tmp}/r --data {archive} --epochs 0", "epochs must be >= 1"),
    ("train --out {tmp}/r --data {archive} --max-iters -5", "max_iters must be >= 0"),
    ("train --out {tmp}/r --data {archive} --lr nan", "lr must be a finite number > 0"),
    ("train --out {tmp}/r --data {tmp}/missing.tar.gz", "missing.tar.gz: no such file"),
    ("train --out {archive} --data {archive}", "is a file; name a folder for the run"),
    (
        "train --out {tmp}/typo --data {archive} --valid-fraction 0.2 --resume",
        "typo does not exist; check the --out folder",
    ),
    (
        "train --out {run} --data {archive} --valid-fraction 0.2 --resnet-version 1 "
        "--resnet-size 1 --batch-size 32 --epochs 2 --lr 0.5 --resume",
        "would change the experiment: lr 0.1 -> 0.5",
    ),
    (
        "train --out {run} --data {archive} --resnet-size 2 --resume",
        "checkpoint of another architecture: resnet_size 1 (checkpoint) vs 2 (run). To go on, "
        "resume with --resnet-size 1 to continue it",
    ),
    (
        "train --out {run} --data {archive} --valid-fraction 0.2",
        "already holds checkpoints; pass --resume",
    ),
    ("train --out {tmp}/r --data {archive}", "split_index 50000 is beyond the 200 training"),
    (
        "train --out {tmp}/r --data {archive} --device cpu --cuda-graph",
        "cuda_graph needs a CUDA device, but this run's device is cpu",
    ),
    ("stage fit --params params.yaml --run nope --out {tmp}/g", "no run 'nope'"),
    ("evaluate --run {run} --checkpoints a:b", "expected START:STOP:STEP"),
    ("evaluate --run {run} --checkpoints 7", "no checkpoint model-7.ckpt (found: model-1.ckpt)"),
    ("predict --checkpoint {archive} {archive}", "not a readable checkpoint (it holds something"),
    ("predict --checkpoint {tmp}/none.ckpt {archive}", "no such checkpoint"),
    ("predict --checkpoint {tmp} {archive}", "is a folder holding no checkpoint (*.ckpt)"),
    (
        "predict --checkpoint {run} {archive}",
        "is a folder; give one of its checkpoints (last.ckpt, model-1.ckpt)",
    ),
    # Trust nothing, say what to do: the lines that misled.
    (
        "train --out {tmp}/r --data {archive} --valid-fraction 0.2 --recipe paper "
        "--batch-size 100000",
        "batch_size 100000 is not a multiple of bn_group_images 64 (BN statistics over groups "
        "of 64 images, the paper recipe's unless given): give --batch-size a multiple of 64",
    ),
    ("rehearse --workdir {archive}", "is a file; name an empty or new folder"),
    ("rehearse --workdir {run}", "is not empty; name an empty or new folder"),
    ("pack {tmp} {tmp}", "is a folder; name the archive file to write, e.g."),
    ("predict --checkpoint {run}/model-1.ckpt {archive}", "cannot be read as an image"),
    ("fetch --dest {tmp}/d --archive {tmp}/none.tar.gz", "none.tar.gz: archive not found"),
    # The first hour, second pass: settings that trained NaN or were recorded but ignored.
    ("train --out {tmp}/r --data {archive} --momentum inf", "momentum must be in [0, 1), got inf"),
    ("train --out {tmp}/r --data {archive} --momentum -0.5", "momentum must be in [0, 1)"),
    ("train --out {tmp}/r --data {archive} --weight-decay -1", "weight_decay must be a finite"),
    ("train --out {tmp}/r --data {archive} --weight-decay nan", "weight_decay must be a finite"),
    ("train --out {tmp}/r --data {archive} --bn-momentum nan", "bn_momentum must be in [0, 1]"),
    ("train --out {tmp}/r --data {archive} --optimizer adam --nesterov", "option of the sgd"),
    (
        "train --out {tmp}/r --data {archive} --valid-fraction 0.1 --split-index 100",
        "split_index and valid_fraction both say where validation starts; give one of them",
    ),
    # A folder holding anything but a run's checkpoints (the current folder, for --out '').
    (
        "train --out {run}/.. --data {archive} --valid-fraction 0.2",
        "already holds files (run); a new run needs an empty or new folder",
    ),
    ("fetch --dest {archive} --archive {archive}", "--dest is a file; name a folder"),
    ("rehearse --repo {tmp} --workdir {tmp}/w", "give --repo its folder"),
    ("train --out /proc/resnet-repro --data {archive} --valid-fraction 0.2", "cannot write"),
    ("evaluate --run {run} --checkpoints 5:1:1", "5:1:1 names no epoch (START 5 is after STOP 1)"),
    (
        "compare --golden tests/golden/tables/cpu.yaml --metrics-dir {tmp}/nosuch --out {tmp}/c",
        "nosuch: no such metrics folder",
    ),
]


@pytest.mark.parametrize(("command", "fragment"), BAD_INPUTS, ids=[r[0][:40] for r in BAD_INPUTS])
def test_each_bad_input_gets_one_line_and_changes_nothing(
    command, fragment, fake_archive, trained_run, tmp_path, capsys
):
    before = files_of(trained_run)
    args = command.format(archive=fake_archive, run=trained_run, tmp=tmp_path).split()
    assert main(args) == 1
    err = capsys.readouterr().err.strip()
    assert fragment in err and len(err.splitlines()) == 1, err
    assert files_of(trained_run) == before


USAGE_ERRORS = [
    ("train --out x --bogus", "train", "unrecognized arguments: --bogus"),
    ("evaluate --run x --bogus", "evaluate", "unrecognized arguments: --bogus"),
    ("stage fit --run a --out b --bogus", "stage fit", "unrecognized arguments: --bogus"),
    ("pack imgs a.tar.gz --seed -1", "pack", "--seed: must be >= 0, got -1"),
    (
        "fake-archive a.tar.gz --train-per-batch 100000000",
        "fake-archive",
        "must be at most 10000 (a batch of the official archive), got 100000000",
    ),
]


@pytest.mark.parametrize(("command", "name", "fragment"), USAGE_ERRORS)
def test_an_option_mistake_prints_its_commands_own_usage(command, name, fragment, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(command.split())
    assert exit_.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[0].startswith(f"usage: resnet-repro {name} ")
    assert err[-1].startswith(f"resnet-repro {name}: error: ") and fragment in err[-1]


def test_an_empty_archive_name_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["pack", str(tmp_path), ""]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        "resnet-repro pack: error: . is a folder; name the archive file to write, "
        "e.g. archive.tar.gz"
    )
    assert list(tmp_path.iterdir()) == []


def test_a_resume_that_cannot_write_its_folder_says_to_make_it_writable(
    trained_run, monkeypatch, capsys
):
    """(As root every folder is writable: the refusal is simulated where training writes.)"""
    import resnet_repro.train

    def refused(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(trained_run / "history.jsonl"))

    monkeypatch.setattr(resnet_repro.train, "train", refused)
    config = str(trained_run / "config.yaml")
    assert main(["train", "--config", config, "--out", str(trained_run), "--resume"]) == 1
    err = capsys.readouterr().err
    assert "Permission denied; make the folder writable to continue its run" in err


def test_rehearse_says_when_uncommitted_changes_are_not_rehearsed(tmp_path, capsys):
    import subprocess

    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    (repo / "params.yaml").write_text("runs: {}\n")
    subprocess.run([*git, "-C", str(repo), "add", "params.yaml"], check=True)
    subprocess.run([*git, "-C", str(repo), "commit", "-qm", "x"], check=True)
    (repo / "params.yaml").write_text("runs: {changed: {}}\n")
    assert main(["rehearse", "--repo", str(repo), "--workdir", str(tmp_path / "w")]) == 1
    err = capsys.readouterr().err
    assert "its 1 uncommitted change(s) are not in it: commit them to rehearse them" in err
    assert (
        err.strip()
        .splitlines()[-1]
        .endswith(
            "has no pipeline/rehearsal.yaml: the repository is not this project's (give --repo its "
            "folder), or the override is not committed"
        )
    )


def test_a_refused_resume_creates_no_folder(fake_archive, tmp_path, capsys):
    out = tmp_path / "typo"
    assert main(["train", "--out", str(out), "--data", str(fake_archive), "--resume"]) == 1
    assert not out.exists()


def test_an_empty_out_is_the_current_folder_and_is_refused(fake_archive, tmp_path, monkeypatch):
    """An unset $RUN in `--out "$RUN"`: the user's files in the current folder stay theirs."""
    (tmp_path / "config.yaml").write_text("mine\n")
    monkeypatch.chdir(tmp_path)
    options = ["--data", str(fake_archive), "--valid-fraction", "0.2", "--device", "cpu"]
    assert main(["train", "--out", "", *options]) == 1
    assert (tmp_path / "config.yaml").read_text() == "mine\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".lock", "config.yaml"]


def test_a_folder_of_records_without_checkpoints_is_not_overwritten(
    fake_archive, trained_run, tmp_path, capsys
):
    old = tmp_path / "old"
    old.mkdir()
    for name in ("config.yaml", "history.jsonl", "provenance.json"):
        (old / name).write_bytes((trained_run / name).read_bytes())
    before = files_of(old)
    options = ["--data", str(fake_archive), "--valid-fraction", "0.2", "--device", "cpu"]
    assert main(["train", "--out", str(old), *options]) == 1
    assert "already holds files (config.yaml, history.jsonl, provenance.json)" in (
        capsys.readouterr().err
    )
    assert {k: v for k, v in files_of(old).items() if k.name != ".lock"} == before


def test_resuming_a_finished_run_says_so_and_records_nothing(trained_run, capsys):
    before = files_of(trained_run)
    config = str(trained_run / "config.yaml")
    assert main(["train", "--config", config, "--out", str(trained_run), "--resume"]) == 0
    assert "is complete (epoch 1 of 1, step" in capsys.readouterr().out
    assert files_of(trained_run) == before


def test_fake_archive_sizes_must_be_positive(tmp_path, capsys):
    for option in ("--train-per-batch", "--test-size"):
        with pytest.raises(SystemExit) as exit_:
            main(["fake-archive", str(tmp_path / "a.tar.gz"), option, "0"])
        assert exit_.value.code == 2
        assert "must be >= 1, got 0" in capsys.readouterr().err
    assert not (tmp_path / "a.tar.gz").exists()


def test_predict_top_must_be_positive(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "--checkpoint", "c.ckpt", "--top", "0", "x.png"])
    assert exit_.value.code == 2 and "must be >= 1" in capsys.readouterr().err


def test_ctrl_c_gives_the_resume_line_and_status_130(monkeypatch, capsys, tmp_path):
    from resnet_repro import train as train_module

    def interrupted(*args, **kwargs):
        raise train_module.TrainingInterrupted("interrupted; run/last.ckpt holds epoch 3: rerun")

    monkeypatch.setattr(train_module, "train", interrupted)
    assert main(["train", "--out", str(tmp_path / "run")]) == 130
    assert "holds epoch 3: rerun" in capsys.readouterr().err


def test_an_image_too_large_to_decode_safely_is_one_line(
    trained_run, tmp_path, capsys, monkeypatch
):
    from PIL import Image

    Image.new("RGB", (40, 24)).save(tmp_path / "big.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 960 pixels > 2 x 100: a "bomb"
    ckpt = str(trained_run / "model-1.ckpt")
    assert main(["predict", "--checkpoint", ckpt, str(tmp_path / "big.png")]) == 1
    err = capsys.readouterr().err
    assert "big.png: cannot be read as an image" in err and len(err.strip().splitlines()) == 1


def test_fetch_of_another_archive_notes_it_in_one_line(fake_archive, tmp_path, capsys):
    from resnet_repro.cifar import md5_of

    md5 = md5_of(fake_archive)
    assert (
        main(["fetch", "--dest", str(tmp_path), "--archive", str(fake_archive), "--md5", md5]) == 0
    )
    err = capsys.readouterr().err
    assert err.startswith("resnet-repro fetch: note: fetch_cifar10: md5 ")
    assert "not the official archive's" in err and "UserWarning" not in err
    assert len(err.strip().splitlines()) == 1


def test_help_and_fetch_start_without_torch(fake_archive, tmp_path):
    """The command line imports torch only where a command needs it: --help, train --help
    and fetch run without it (measured: 0.07 s for the three helps, against 1.1 s for
    importing torch alone, on the 2-core CPU)."""
    script = (
        "import sys\n"
        "from resnet_repro.cli import main\n"
        "for args in (['--help'], ['train', '--help'], ['fetch', '--help']):\n"
        "    try:\n"
        "        main(args)\n"
        "    except SystemExit:\n"
        "        pass\n"
        f"assert main(['fetch', '--dest', {str(tmp_path / 'd')!r}, '--archive', "
        f"{str(fake_archive)!r}, '--md5', {md5_of(fake_archive)!r}]) == 0\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"


def test_the_orchestration_commands_run_without_torch(tmp_path):
    """rehearse and stage train-many drive git and dvc: they import the torch-free study.py,
    not the engine (each stops here at its first user error)."""
    (tmp_path / "params.yaml").write_text("runs:\n  r: {}\n")
    commands = [
        ["stage", "train-many", "--repo", str(tmp_path), "--runs", "nope"],
        ["rehearse", "--workdir", str(tmp_path / "w1"), "--repo", str(tmp_path / "none")],
    ]
    script = (
        "import sys\n"
        "from resnet_repro.cli import main\n"
        f"assert [main(args) for args in {commands!r}] == [1, 1]\n"
        "assert 'resnet_repro.study_clone' in sys.modules\n"
        "print('torch' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "False"
