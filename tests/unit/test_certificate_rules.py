"""The certificate's rules without training: each derivation and check of certificate.py on
small hand-made records and folders (test_certificate.py runs them on a trained study). These
are the tests mutation testing runs against certificate.py: they take milliseconds."""

import json
from pathlib import Path

import pytest

from resnet_repro import certificate as cert
from resnet_repro.cifar import OFFICIAL_MD5, sha256_of
from resnet_repro.golden import Cell

ENV = {"python": "3.11.7", "platform": "Linux", "packages": {"torch": "2.13.0", "numpy": "2.0"}}


def test_the_environment_digest_covers_python_platform_and_every_package():
    digest = cert.environment_digest(ENV)
    assert len(digest) == 64
    for changed in (
        {**ENV, "python": "3.12.0"},
        {**ENV, "platform": "Darwin"},
        {**ENV, "packages": {"torch": "2.13.1", "numpy": "2.0"}},
        {**ENV, "packages": {"torch": "2.13.0"}},
    ):
        assert cert.environment_digest(changed) != digest
    env = cert.environment()
    assert env["digest"] == cert.environment_digest(env)
    assert set(env) == {"python", "platform", "packages", "digest"}
    assert env["packages"]["torch"] and list(env["packages"]) == sorted(env["packages"])


def test_the_statistic_of_the_seeds_is_the_cells():
    assert cert.statistic_of("median", [0.5]) == 0.5
    assert cert.statistic_of("mean", [0.25]) == 0.25
    assert cert.statistic_of("median", [0.1, 0.9, 0.2]) == 0.2
    assert cert.statistic_of("mean", [0.1, 0.9, 0.2]) == pytest.approx(0.4)
    assert cert.statistic_of("single", [0.1, 0.3]) == pytest.approx(0.2)


def run_folder(root: Path, *, epochs: int = 2, continue_epochs: int = 0) -> Path:
    root.mkdir(parents=True)
    text = (
        f"schedule: constant\nmax_iters: 0\nepochs: {epochs}\ncontinue_epochs: {continue_epochs}\n"
    )
    (root / "config.yaml").write_text(text)
    return root


def test_a_metric_is_measured_on_its_checkpoint_and_split(tmp_path):
    folder = run_folder(tmp_path / "r", epochs=4, continue_epochs=2)
    seed = {"final_epoch": 4, "chosen_epoch": 3}
    assert cert.measured_on("valid_acc@2", seed, folder) == (2, "valid")
    assert cert.measured_on("test_acc@2", seed, folder) == (2, "test")
    assert cert.measured_on("valid_acc_final", seed, folder) == (4, "valid")
    assert cert.measured_on("test_acc_chosen", seed, folder) == (3, "test")
    assert cert.measured_on("test_acc_continued", seed, folder) == (6, "test")
    assert cert.measured_on("continued_epoch_seconds", seed, folder) is None
    assert cert.measured_on("no_such_metric", seed, folder) is None


def record(verdict="pass", md5=OFFICIAL_MD5, value=0.9):
    return {"verdict": verdict, "seeds": {"0": {"value": value, "data_md5": md5}}}


def runs(rehearsal=False, dirty=False):
    segment = {"code": {"commit": "abc", "dirty": dirty}}
    return {"r": [{"rehearsal": rehearsal, "segments": [segment]}]}


def test_the_first_line_says_what_kind_of_study_it_is():
    cells = [record(), record(), record("fail")]
    assert cert.first_line(cells, runs()) == "CERTIFICATE: 3 cells: 1 fail, 2 pass"
    assert cert.first_line(cells, runs(rehearsal=True)).startswith("REHEARSAL (amounts shrunk")
    assert cert.first_line([record(md5="other")], runs()) == (
        "NOT THE OFFICIAL CIFAR-10 ARCHIVE (a CPU-scale or own-data study); 1 cells: 1 pass"
    )
    assert cert.first_line(cells, runs(dirty=True)) == (
        "DIRTY OR UNKNOWN CODE TREE (a segment's code is not a clean commit); "
        "3 cells: 1 fail, 2 pass"
    )
    unknown = {"r": [{"rehearsal": False, "segments": [{"code": {}}]}]}
    assert cert.first_line(cells, unknown).startswith("DIRTY OR UNKNOWN CODE TREE")
    everything = cert.first_line([record(md5="other")], runs(rehearsal=True, dirty=True))
    assert everything.count("; ") == 3 and everything.endswith("1 cells: 1 pass")


def certificate(**fields):
    base = {
        "status": "CERTIFICATE: 0 cells: ",
        "format": cert.FORMAT,
        "root": ".",
        "runs_dir": "runs",
        "metrics_dir": "results/runs",
        "tables": {},
        "cells": [],
        "runs": {},
        "checkpoints": {},
        "environment": {**ENV, "digest": cert.environment_digest(ENV)},
    }
    return {**base, **fields}


def test_the_certificates_first_line_is_its_status_and_it_reads_back(tmp_path):
    written = cert.write_certificate(certificate(), tmp_path / "deep" / "er" / "c.json")
    lines = written.read_text().splitlines()
    assert lines[:3] == ['{"status": "CERTIFICATE: 0 cells: ",', '  "format": 2,', '  "root": ".",']
    assert written.read_text().count('"status"') == 1 and lines[-1] == "}"
    assert cert.read_certificate(written) == certificate()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("{", "not a readable certificate"),
        ("[1]", "not a certificate (a JSON list)"),
        (json.dumps(certificate(format=1)), "format 1, not 2 (another version"),
        (json.dumps({"status": "x"}), "format None, not 2"),
        (json.dumps(certificate(cells={})), "malformed certificate: cells (a list);"),
        (json.dumps(certificate(root=1, runs=[])), "root (a str), runs (a dict);"),
        (json.dumps(certificate(format=True)), "format True, not 2"),
    ],
)
def test_a_certificate_that_is_not_one_is_refused_in_one_line(tmp_path, text, message):
    path = tmp_path / "c.json"
    path.write_text(text)
    with pytest.raises(cert.CertificateError) as e:
        cert.read_certificate(path)
    assert message in str(e.value) and str(e.value).startswith(f"{path}: ")
    assert str(e.value).endswith("(dvc repro report)") and "\n" not in str(e.value)


def test_a_missing_certificate_is_refused(tmp_path):
    with pytest.raises(cert.CertificateError, match="not a readable certificate"):
        cert.read_certificate(tmp_path / "none.json")


def test_the_markdown_section_shows_each_cell(tmp_path):
    cells = [
        {
            "cell": "t.yaml:r:test_acc_final",
            "statistic": "mean",
            "value": 0.912345,
            "seeds": {"0": {"value": 0.9}, "1": {"value": 0.924690}},
            "spread": 0.0174,
            "golden": 0.93,
            "rule_in_words": "within 2 points of golden",
            "verdict": "pass",
        },
        {
            "cell": "t.yaml:s:valid_acc_final",
            "statistic": "single",
            "value": None,
            "seeds": {},
            "spread": None,
            "golden": None,
            "rule_in_words": "at least golden - 1 points",
            "verdict": "missing",
        },
    ]
    text = cert.markdown(certificate(status="CERTIFICATE: 2 cells", cells=cells))
    assert text.splitlines() == [
        "## Certificate",
        "",
        "CERTIFICATE: 2 cells",
        "",
        "Each cell's seeds, their values and checkpoints are in `results/certificate.json`; "
        "`resnet-repro verify` re-checks them.",
        "",
        "| cell | statistic | seeds: values % | spread | golden % | rule | verdict |",
        "|---|---|---|---|---|---|---|",
        "| t.yaml:r:test_acc_final | mean = 91.23 | 0: 90.00, 1: 92.47 | 1.74 | 93.00 | "
        "within 2 points of golden | pass |",
        "| t.yaml:s:valid_acc_final | single = — | none | — | — | at least golden - 1 points "
        "| missing |",
        "",
        f"Environment: Python 3.11.7, 2 packages (sha256 {cert.environment_digest(ENV)[:12]}), "
        "torch 2.13.0.",
    ]
    assert text.endswith("torch 2.13.0.\n")
    bare = certificate(environment={**ENV, "packages": {}, "digest": "0" * 64})
    assert "0 packages (sha256 000000000000), torch ?." in cert.markdown(bare)


def test_images_apart_allowed_is_one_per_thousand_and_at_least_one():
    assert [cert.images_apart_allowed(n) for n in (1, 999, 1000, 1999, 2000, 10_000)] == [
        1,
        1,
        1,
        1,
        2,
        10,
    ]


def test_first_difference_names_the_path_and_both_values():
    first = cert.first_difference
    assert first({"a": 1, "b": 2}, {"a": 1, "b": 3}, "cell") == (
        "cell.b: the certificate says 2, the files give 3"
    )
    assert first({"a": 1}, {"a": 1, "b": 2}, "cell") == "cell.b: missing from the certificate"
    assert first({"a": 1, "c": 2}, {"a": 1}, "cell") == "cell.c: not something the files give"
    assert first({"x": [1, {"y": 2}]}, {"x": [1, {"y": 5}]}, "c") == (
        "c.x[1].y: the certificate says 2, the files give 5"
    )
    assert (
        first([1, 2], [1, 2, 3], "l") == "l: the certificate says [1, 2], the files give [1, 2, 3]"
    )
    assert first(None, {"a": 1}, "k") == 'k: the certificate says null, the files give {"a": 1}'
    assert first({2: "a", "1": "b"}, {2: "a", "1": "c"}, "m") == (
        'm.1: the certificate says "b", the files give "c"'
    )
    assert cert.short("x" * 100) == '"' + "x" * 76 + "..."
    assert cert.short("x" * 78) == '"' + "x" * 78 + '"'


def test_differences_name_each_field_that_is_not_what_the_files_give():
    fresh = certificate(cells=[{"cell": "a"}])
    assert cert.differences(fresh, fresh) == []
    changed = {**fresh, "root": "..", "extra": 1}
    assert cert.differences(changed, fresh) == [
        "unexpected field 'extra'",
        'root: the certificate says "..", the files give "."',
    ]
    # Its cells and environment are checked elsewhere and by their own rules.
    assert cert.differences({**fresh, "cells": [{"cell": "a"}, {"cell": "b"}]}, fresh) == []
    for cells in ([{"cell": "a"}, {"cell": "a"}], [{"cell": "a"}, {}], [{"cell": "a"}, 3]):
        assert cert.differences({**fresh, "cells": cells}, fresh) == [
            "cells: a cell without a name, or a name twice"
        ]
    env = fresh["environment"]
    for bad in (
        {**env, "python": "3.12"},
        {**env, "extra": 1},
        {k: v for k, v in env.items() if k != "platform"},
        {**env, "packages": None},
    ):
        assert cert.differences({**fresh, "environment": bad}, fresh) == [
            "environment: its digest is not that of its Python, platform and packages"
        ]


def test_disagreements_name_each_cell():
    fresh = certificate(tables={"t.yaml": "0"}, cells=[{"cell": "a", "v": 1}, {"cell": "b"}])
    assert cert.disagreements(fresh, fresh) == {"certificate": [], "a": [], "b": []}
    stored = {**fresh, "cells": [{"cell": "a", "v": 2}, {"cell": "z"}, 5]}
    assert cert.disagreements(stored, fresh) == {
        "certificate": ["cells: a cell without a name, or a name twice"],
        "z": ["no such cell in the golden tables t.yaml"],
        "a": ["cell.v: the certificate says 2, the files give 1"],
        "b": ["the golden table has this cell, the certificate does not"],
    }


class Recorded(cert.Evaluator):
    """An evaluator whose checkpoints give the accuracies it is told (no network is run)."""

    def __init__(self, device_type, accuracies, images=1000, md5="m"):
        super().__init__(type("Device", (), {"type": device_type})())
        self.given, self.images, self.md5 = accuracies, images, md5

    def accuracy(self, checkpoint, split):
        return self.given[(Path(checkpoint).name, split)], self.images, self.md5


def seed(value=0.5, **fields):
    return {
        "value": value,
        "checkpoint": "runs/r/model-2.ckpt",
        "sha256": "s",
        "split": "test",
        "device_type": "cpu",
        "data_md5": "m",
        **fields,
    }


def test_a_seed_holds_when_its_checkpoint_gives_its_value():
    exact = Recorded("cpu", {("model-2.ckpt", "test"): 0.5})
    assert exact.check_seed("0", seed()) == []
    off = Recorded("cpu", {("model-2.ckpt", "test"): 0.501})
    assert off.check_seed("0", seed()) == [
        "seed 0: runs/r/model-2.ckpt gives 0.501000 on test, metrics.json 0.500000 (1 images "
        "apart, 0 allowed)"
    ]
    # On another device type, 1 image per 1,000 evaluated may differ; 2 may not.
    elsewhere = Recorded("cuda", {("model-2.ckpt", "test"): 0.501})
    assert elsewhere.check_seed("0", seed()) == []
    assert Recorded("cuda", {("model-2.ckpt", "test"): 0.502}).check_seed("0", seed()) == [
        "seed 0: runs/r/model-2.ckpt gives 0.502000 on test, metrics.json 0.500000 (2 images "
        "apart, 1 allowed)"
    ]
    unknown_device = Recorded("cuda", {("model-2.ckpt", "test"): 0.501})
    assert unknown_device.check_seed("0", seed(device_type=None)) != []
    assert exact.check_seed("0", seed(sha256=None)) == ["seed 0: runs/r/model-2.ckpt missing"]
    assert exact.check_seed("0", seed(data_md5="n")) == ["seed 0: data md5 m != the run's n"]


def test_a_choice_holds_when_its_candidates_make_it():
    valid = {("model-1.ckpt", "valid"): 0.7, ("model-2.ckpt", "valid"): 0.7}
    ev = Recorded("cpu", {**valid, ("model-2.ckpt", "test"): 0.5})
    tied = {"1": 0.7, "2": 0.7}
    assert ev.check_seed("0", seed(candidates=tied)) == []  # the latest of equals
    chosen = Path("runs/r/model-1.ckpt")
    assert ev.check_choice("0", chosen, tied, 0) == [
        "seed 0: the chosen checkpoint is model-1.ckpt, its candidates choose model-2.ckpt"
    ]
    assert ev.check_choice("0", chosen, {"1": 0.7, "2": 0.69}, 0) == [
        "seed 0: candidate runs/r/model-2.ckpt gives 0.700000 on valid, metrics.json 0.690000"
    ]
    assert ev.check_choice("0", chosen, {"1": 0.7, "2": 0.699}, 1) == []
    # Without validation, the last checkpoint is the chosen one.
    assert ev.check_choice("0", Path("runs/r/model-2.ckpt"), {"1": None, "2": None}, 0) == []
    assert ev.check_choice("0", chosen, {"1": None, "2": None}, 0) != []
    for nothing in ({}, None, [0.7]):
        assert ev.check_choice("0", chosen, nothing, 0) == [
            "seed 0: metrics.json lists no validated checkpoints to choose from"
        ]


def cell(metrics_path, seeds, *, metric="test_acc_final", statistic="single", value=0.5):
    return {
        "cell": f"t.yaml:r:{metric}",
        "metric": metric,
        "statistic": statistic,
        "value": value,
        "metrics": str(metrics_path),
        "seeds": seeds,
    }


def test_a_cell_holds_when_its_seeds_and_metrics_agree(tmp_path):
    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"test_acc_final": 0.5, "test_acc_final_median": 0.4}))
    ev = Recorded("cpu", {("model-2.ckpt", "test"): 0.5})
    assert ev.check(cell(path, {"0": seed()})) == []
    assert ev.check(cell(path, {"0": seed()}, value=0.6)) == [
        f"{path} states single 0.5, the seeds give 0.6"
    ]
    two = {"0": seed(), "1": seed()}
    assert ev.check(cell(path, two, statistic="median", value=0.4)) == []
    assert ev.check(cell(path, {"0": seed()}, statistic="median")) == []
    # A value without its checkpoint: an accuracy must have one, a duration need not.
    bare = {"0": {"value": 0.5}}
    assert ev.check(cell(path, bare)) == ["seed 0: no run folder holds the checkpoint of 0.5"]
    path.write_text(json.dumps({"continued_epoch_seconds": 0.5}))
    assert ev.check(cell(path, bare, metric="continued_epoch_seconds")) == []
    assert ev.check(cell(tmp_path / "none.json", {"0": {"value": None}}, value=None)) == []


def test_a_checkpoint_that_cannot_be_evaluated_is_named(tmp_path):
    class Broken(Recorded):
        def accuracy(self, checkpoint, split):
            raise OSError("gone")

    path = tmp_path / "metrics.json"
    path.write_text(json.dumps({"test_acc_final": 0.5}))
    assert Broken("cpu", {}).check(cell(path, {"0": seed()})) == [
        "seed 0: cannot re-evaluate runs/r/model-2.ckpt (gone)"
    ]


def study(tmp_path: Path, seeds=("0", "1"), values=(0.5, 0.7)) -> Path:
    """A run of seed folders with metrics, configs and checkpoint files (no network)."""
    metrics = {"seeds": {}, "test_acc_final": sum(values) / len(values)}
    for s, v in zip(seeds, values, strict=True):
        folder = run_folder(tmp_path / "runs" / "r" / f"seed-{s}")
        (folder / "model-2.ckpt").write_bytes(s.encode())
        (folder / "provenance.json").write_text(json.dumps({"segments": [{"code": {}}]}))
        (folder / "history.jsonl").write_text('{"epoch": 1, "seconds": 2.5}\n{"epoch": 2}\n')
        seed_metrics = {"test_acc_final": v, "final_epoch": 2, "data_md5": "m"}
        metrics["seeds"][s] = {**seed_metrics, "eval_device_type": "cpu"}
    (tmp_path / "results" / "r").mkdir(parents=True)
    (tmp_path / "results" / "r" / "metrics.json").write_text(json.dumps(metrics))
    return tmp_path


def test_a_cell_record_traces_each_seed_to_its_checkpoint(tmp_path):
    root = study(tmp_path)
    the_cell = Cell("t.yaml", "r", "test_acc_final", 0.6, "two_sided", 5.0, statistic="mean")
    shas: dict = {}
    rec = cert.cell_record(the_cell, Path("t.yaml"), root / "runs", root / "results", shas)
    checkpoint = root / "runs/r/seed-1/model-2.ckpt"
    assert rec["seeds"]["1"] == {
        "value": 0.7,
        "checkpoint": str(checkpoint),
        "sha256": sha256_of(checkpoint),
        "split": "test",
        "device_type": "cpu",
        "data_md5": "m",
    }
    assert shas == {str(p): sha256_of(p) for p in sorted((root / "runs/r").glob("*/model-2.ckpt"))}
    assert rec["value"] == pytest.approx(0.6) and rec["spread"] == pytest.approx(0.1414, abs=1e-4)
    assert (rec["verdict"], rec["metric_known"], rec["runs_needed"]) == ("pass", True, 1)
    assert rec["cell"] == "t.yaml:r:test_acc_final" and rec["golden"] == 0.6
    unknown = Cell("t.yaml", "r", "test_acc_nope", 0.6, "two_sided", 5.0)
    rec = cert.cell_record(unknown, Path("t.yaml"), root / "runs", root / "results", {})
    assert (rec["verdict"], rec["metric_known"], rec["value"]) == ("unknown metric", False, None)
    missing = Cell("t.yaml", "gone", "test_acc_final", 0.6, "two_sided", 5.0)
    rec = cert.cell_record(missing, Path("t.yaml"), root / "runs", root / "results", {})
    assert (rec["verdict"], rec["seeds"], rec["spread"]) == ("missing", {}, None)


def test_a_run_record_holds_its_segments_and_wall_time(tmp_path):
    folder = study(tmp_path) / "runs" / "r" / "seed-0"
    assert cert.run_record(folder) == {
        "folder": str(folder),
        "segments": [{"code": {}}],
        "deterministic": False,
        "rehearsal": False,
        "wall_seconds": 2.5,
    }


TABLE = {
    "source": "hand-made",
    "recipe": "seed",
    "split": "fake",
    "metric": "test",
    "checkpoint": "final",
    "runs_per_cell": 2,
    "cells": [
        {
            "run": "r",
            "metric": "test_acc_final",
            "statistic": "mean",
            "runs": 2,
            "golden": 0.6,
            "tolerance": {"rule": "two_sided", "points": 5.0},
        }
    ],
}


@pytest.fixture
def repo(tmp_path, monkeypatch):
    """A finished study as a repository holds it (hand-made files, no network), its
    certificate written, the current folder its top; verify's evaluator is told each
    checkpoint's accuracy."""
    import yaml

    root = study(tmp_path)
    (root / "results" / "runs").mkdir()
    (root / "results" / "r").rename(root / "results" / "runs" / "r")
    (root / "tables").mkdir()
    (root / "tables" / "t.yaml").write_text(yaml.safe_dump(TABLE))
    (root / "params.yaml").write_text("runs: {r: {}}\ncompare: {golden: tables/t.yaml}\n")
    monkeypatch.chdir(root)
    path = Path("results/certificate.json")
    made = cert.build_certificate(
        [Path("tables/t.yaml")], Path("runs"), Path("results/runs"), path=path
    )
    cert.write_certificate(made, path)

    class Told(Recorded):
        def accuracy(self, checkpoint, split):
            seed_value = {"seed-0": 0.5, "seed-1": 0.7}[Path(checkpoint).parent.name]
            return seed_value, 1000, "m"

    monkeypatch.setattr(cert, "Evaluator", lambda device: Told(device.type, {}))
    return root


def run_verify(path="results/certificate.json"):
    said = []
    return cert.verify(Path(path), device="cpu", say=said.append), said


def test_the_certificate_of_a_study_holds_every_field(repo):
    made = json.loads(Path("results/certificate.json").read_text())
    shas = {
        f"runs/r/seed-{s}/model-2.ckpt": sha256_of(repo / f"runs/r/seed-{s}/model-2.ckpt")
        for s in (0, 1)
    }
    assert made["status"] == (
        "NOT THE OFFICIAL CIFAR-10 ARCHIVE (a CPU-scale or own-data study); DIRTY OR UNKNOWN "
        "CODE TREE (a segment's code is not a clean commit); 1 cells: 1 pass"
    )
    assert (made["format"], made["root"], made["runs_dir"], made["metrics_dir"]) == (
        2,
        "..",
        "runs",
        "results/runs",
    )
    assert made["tables"] == {"tables/t.yaml": sha256_of(repo / "tables/t.yaml")}
    assert made["checkpoints"] == shas
    seed_record = {
        "folder": "runs/r/seed-0",
        "segments": [{"code": {}}],
        "deterministic": False,
        "rehearsal": False,
        "wall_seconds": 2.5,
    }
    assert made["runs"] == {"r": [seed_record, {**seed_record, "folder": "runs/r/seed-1"}]}
    assert made["cells"] == [
        {
            "cell": "t.yaml:r:test_acc_final",
            "table": "tables/t.yaml",
            "run": "r",
            "metric": "test_acc_final",
            "statistic": "mean",
            "golden": 0.6,
            "rule": "two_sided",
            "points": 5.0,
            "rule_in_words": "within 5 points of golden",
            "derivation": "within 5 points of golden",
            "runs_needed": 2,
            "metrics": "results/runs/r/metrics.json",
            "seeds": {
                s: {
                    "value": v,
                    "checkpoint": f"runs/r/seed-{s}/model-2.ckpt",
                    "sha256": shas[f"runs/r/seed-{s}/model-2.ckpt"],
                    "split": "test",
                    "device_type": "cpu",
                    "data_md5": "m",
                }
                for s, v in (("0", 0.5), ("1", 0.7))
            },
            "value": 0.6,
            "spread": pytest.approx(0.141421, abs=1e-6),
            "metric_known": True,
            "verdict": "pass",
        }
    ]
    assert made["environment"]["digest"] == cert.environment_digest(made["environment"])


def test_verify_holds_an_untouched_study_from_anywhere(repo, monkeypatch):
    failures, said = run_verify()
    assert failures == []
    assert said == [
        "ok   t.yaml:r:test_acc_final: mean 0.6 over 2 seed(s), re-evaluated; verdict pass "
        "re-derived"
    ]
    monkeypatch.chdir(repo / "runs")
    assert run_verify(repo / "results/certificate.json")[0] == []


def test_verify_names_each_cell_and_field_that_does_not_hold(repo):
    metrics = Path("results/runs/r/metrics.json")
    edited = json.loads(metrics.read_text())
    edited["seeds"]["1"]["test_acc_final"] = 0.69
    metrics.write_text(json.dumps(edited))
    failures, said = run_verify()
    assert failures == ["t.yaml:r:test_acc_final"]
    assert said[0].startswith("FAIL t.yaml:r:test_acc_final: cell.seeds.1.value: the certificate ")
    assert (
        "seed 1: runs/r/seed-1/model-2.ckpt gives 0.700000 on test, metrics.json 0.690000"
        in (said[0])
    )


def test_verify_refuses_a_changed_checkpoint_and_another_table(repo):
    Path("runs/r/seed-0/model-2.ckpt").write_bytes(b"changed")
    Path("params.yaml").write_text("runs: {r: {}}\ncompare: {golden: tables/other.yaml}\n")
    failures, said = run_verify()
    assert failures == ["certificate", "t.yaml:r:test_acc_final"]
    assert said[0].startswith(
        "FAIL certificate: checkpoints.runs/r/seed-0/model-2.ckpt: the certificate says "
    )
    assert said[0].endswith(
        f'the files give "{sha256_of(repo / "runs/r/seed-0/model-2.ckpt")}"; tables: '
        "params.yaml compares ['tables/other.yaml'], the certificate lists ['tables/t.yaml']"
    )
    assert said[1].startswith("FAIL t.yaml:r:test_acc_final: cell.seeds.0.sha256: ")


def test_verify_refuses_what_cannot_be_re_derived(repo):
    Path("tables/t.yaml").write_text("cells: 3\n")
    with pytest.raises(cert.CertificateError) as e:
        run_verify()
    assert str(e.value).startswith(
        f"{repo / 'results/certificate.json'}: cannot be re-derived from its files: "
    )
    made = json.loads(Path("results/certificate.json").read_text())
    Path("results/certificate.json").write_text(json.dumps({**made, "root": "../nowhere"}))
    with pytest.raises(cert.CertificateError) as e:
        run_verify()
    assert str(e.value) == (
        f"{repo / 'results/certificate.json'}: its repository {repo / 'nowhere'} is not there"
    )


def test_without_params_the_tables_are_the_certificates(repo):
    Path("params.yaml").unlink()
    assert run_verify()[0] == []


def test_the_environment_names_this_python_and_each_package_once():
    import hashlib
    import platform

    env = cert.environment()
    assert env["python"] == platform.python_version()
    assert "torch" in env["packages"] and all(name == name.lower() for name in env["packages"])
    text = "python 3.11.7\nplatform Linux\ntorch==2.13.0\nnumpy==2.0"
    assert cert.environment_digest(ENV) == hashlib.sha256(text.encode()).hexdigest()


def test_a_short_value_is_at_most_80_characters():
    assert cert.short("x" * 79) == '"' + "x" * 76 + "..."  # 81 as JSON
    assert len(cert.short(list(range(100)))) == 80


def test_an_unreadable_environment_never_holds(tmp_path):
    fresh = certificate()
    broken = {**fresh["environment"], "packages": None, "digest": ""}
    assert cert.differences({**fresh, "environment": broken}, fresh) == [
        "environment: its digest is not that of its Python, platform and packages"
    ]
    two = certificate(tables={"a.yaml": "0", "b.yaml": "1"})
    assert cert.disagreements({**two, "cells": [{"cell": "z"}]}, two)["z"] == [
        "no such cell in the golden tables a.yaml, b.yaml"
    ]


def test_a_segment_without_a_code_record_is_an_unknown_tree():
    unknown = {"r": [{"rehearsal": False, "segments": [{}]}]}
    assert cert.first_line([record()], unknown).startswith("DIRTY OR UNKNOWN CODE TREE")


def test_every_seeds_problems_are_named_not_only_the_first():
    given = {("model-2.ckpt", "test"): 0.6, ("model-2.ckpt", "valid"): 0.6}
    ev = Recorded("cpu", {**given, ("model-1.ckpt", "valid"): 0.7})
    path = Path("none.json")
    seeds = {"0": {"value": None}, "1": seed(), "2": {"value": 0.5}, "3": seed()}
    problems = ev.check(cell(path, seeds, value=None))
    assert [p.split(":")[0] for p in problems] == ["seed 1", "seed 2", "seed 3"]
    # The checkpoint's accuracy and the choice it was made by, both named.
    chosen = seed(candidates={"1": 0.7, "2": 0.5}, value=0.5)
    assert ev.check_seed("0", chosen) == [
        "seed 0: runs/r/model-2.ckpt gives 0.600000 on test, metrics.json 0.500000 (100 images "
        "apart, 0 allowed)",
        "seed 0: candidate runs/r/model-2.ckpt gives 0.600000 on valid, metrics.json 0.500000",
        "seed 0: the chosen checkpoint is model-2.ckpt, its candidates choose model-1.ckpt",
    ]


def test_each_checkpoint_and_data_set_is_evaluated_once(monkeypatch, tmp_path):
    from resnet_repro import evaluate

    folder = run_folder(tmp_path / "r")
    loads, evaluations = [], []

    def load_eval_data(run, data, device, splits):
        loads.append((run, data, device, splits))
        return {splits[0]: ("x", [0] * 250)}, "md5"

    def loss_and_accuracy(path, x, y, *, expected):
        evaluations.append((path.name, x, len(y), expected.epochs))
        return 0.1, 0.8

    monkeypatch.setattr(evaluate, "load_eval_data", load_eval_data)
    monkeypatch.setattr(evaluate, "loss_and_accuracy", loss_and_accuracy)
    ev = cert.Evaluator("dev")
    assert ev.accuracy(folder / "model-1.ckpt", "test") == (0.8, 250, "md5")
    assert ev.accuracy(folder / "model-1.ckpt", "test") == (0.8, 250, "md5")
    assert ev.accuracy(folder / "model-2.ckpt", "test") == (0.8, 250, "md5")
    ev.accuracy(folder / "model-2.ckpt", "valid")
    assert loads == [(folder, None, "dev", ("test",)), (folder, None, "dev", ("valid",))]
    assert evaluations == [
        ("model-1.ckpt", "x", 250, 2),
        ("model-2.ckpt", "x", 250, 2),
        ("model-2.ckpt", "x", 250, 2),
    ]


def test_cell_records_of_one_seed_a_missing_checkpoint_a_choice_and_a_median(tmp_path):
    root = study(tmp_path, seeds=("0", "1", "2"), values=(0.5, 0.9, 0.6))
    metrics_path = root / "results" / "r" / "metrics.json"
    metrics = json.loads(metrics_path.read_text())
    for s in ("0", "1", "2"):
        metrics["seeds"][s]["chosen_epoch"] = 2
    metrics["seeds"]["1"] |= {"test_acc_chosen": 0.8, "valid_acc": {"2": 0.7}}
    metrics["seeds"]["2"]["test_acc_continued"] = None
    metrics["seeds"]["3"] = {"test_acc_final": 0.4, "final_epoch": 2}  # no folder holds it
    metrics_path.write_text(json.dumps(metrics))
    (root / "runs/r/seed-0/model-2.ckpt").unlink()

    def record_of(metric, statistic="single", runs=1):
        the_cell = Cell(
            "t.yaml", "r", metric, 0.6, "two_sided", 50.0, statistic=statistic, runs=runs
        )
        return cert.cell_record(the_cell, Path("t.yaml"), root / "runs", root / "results", {})

    median = record_of("test_acc_final", "median", 4)
    assert median["value"] == pytest.approx(0.55) and median["verdict"] == "pass"
    assert median["seeds"]["0"]["sha256"] is None  # its checkpoint is gone
    assert median["seeds"]["3"] == {"value": 0.4}
    assert record_of("test_acc_final", "mean", 4)["value"] == pytest.approx(0.6)
    chosen = record_of("test_acc_chosen")["seeds"]["1"]
    assert chosen["candidates"] == {"2": 0.7} and chosen["checkpoint"].endswith("model-2.ckpt")
    assert "candidates" not in median["seeds"]["1"]
    continued = record_of("test_acc_continued")
    assert continued["seeds"]["2"] == {"value": None}
    assert (continued["metric_known"], continued["verdict"]) == (False, "unknown metric")
    for s in ("0", "1", "3"):  # every seed names it: a run without continued epochs
        metrics["seeds"][s]["test_acc_continued"] = None
    metrics_path.write_text(json.dumps(metrics))
    continued = record_of("test_acc_continued")
    assert (continued["metric_known"], continued["verdict"]) == (True, "missing")
    one = study(tmp_path / "one", seeds=("0",), values=(0.5,))
    top = json.loads((one / "results/r/metrics.json").read_text())["seeds"]["0"]
    (one / "results/r/metrics.json").write_text(json.dumps(top))
    (one / "runs/r/seed-0").rename(one / "runs/r/only")
    for name in ("config.yaml", "model-2.ckpt", "provenance.json", "history.jsonl"):
        (one / "runs/r/only" / name).rename(one / "runs/r" / name)
    the_cell = Cell("t.yaml", "r", "test_acc_final", 0.5, "two_sided", 1.0)
    single = cert.cell_record(the_cell, Path("t.yaml"), one / "runs", one / "results", {})
    assert single["seeds"][""]["checkpoint"] == str(one / "runs/r/model-2.ckpt")
    assert (single["value"], single["spread"], single["verdict"]) == (0.5, None, "pass")


def test_a_certificate_of_two_tables_holds_both(repo):
    import yaml

    other = {**TABLE, "cells": [{**TABLE["cells"][0], "golden": 0.61}]}
    Path("tables/u.yaml").write_text(yaml.safe_dump(other))
    tables = [Path("tables/t.yaml"), Path("tables/u.yaml")]
    made = cert.build_certificate(tables, Path("runs"), Path("results/runs"), path=Path("c.json"))
    assert [c["cell"] for c in made["cells"]] == [
        "t.yaml:r:test_acc_final",
        "u.yaml:r:test_acc_final",
    ]


def test_verify_evaluates_on_the_device_asked_for(repo, monkeypatch):
    devices = []

    class Seen(Recorded):
        def __init__(self, device):
            devices.append(device)
            super().__init__(device.type, {})

        def check(self, cell):
            return []

    monkeypatch.setattr(cert, "Evaluator", Seen)
    assert cert.verify(Path("results/certificate.json"), say=lambda line: None) == []
    from resnet_repro.runtime import resolve_device

    assert devices == [resolve_device("auto")]


def test_a_study_whose_params_name_no_tables_is_told_so(repo):
    Path("params.yaml").write_text("runs: {r: {}}\n")
    failures, said = run_verify()
    assert failures == ["certificate"]
    assert said[0] == (
        "FAIL certificate: tables: params.yaml compares [], the certificate lists ['tables/t.yaml']"
    )
