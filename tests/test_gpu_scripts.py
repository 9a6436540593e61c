"""benchmarks/gpu_budget_unpack.sh: what a GPU queue collected lands in results/ as the committed studies."""
import shutil
import subprocess
import tarfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _files(folder: Path, names: dict[str, str]) -> None:
    """Write each relative path of `names` under `folder` with its text."""
    for name, text in names.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_text(text)


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True, text=True).stdout


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git")
def test_unpack_replaces_the_study_and_removes_the_same_set_on_another_gpu(tmp_path):
    """banking77 re-run on an H100: its archive's study, sweep and figures land in results/, its notebook
    in results/notebooks/h100/banking77-fair/, the committed H200 study of banking77 (runs, sweep,
    figures, notebook) is git-removed, a stale run file of a same-named study does not survive, other
    sets (SST-2 and its noisy variant on the H200, banking77's ablation) stay, a partial archive is
    left packed and named, and the queue's log is kept under results/gpu_tests/."""
    repo, collected, packed = tmp_path / "repo", tmp_path / "out", tmp_path / "packed"
    (repo / "benchmarks").mkdir(parents=True)
    shutil.copy(ROOT / "benchmarks" / "gpu_budget_unpack.sh", repo / "benchmarks")
    kept = {"results/runs/sst2-mpnet-h200-fair/short-schedule-42.json.gz": "sst2",
            "results/runs/sst2-noisy20-mpnet-h200-fair/short-schedule-42.json.gz": "noisy",
            "results/runs/banking77-mpnet-h200-fair-ablation/mclearn-42.json.gz": "ablation",
            "results/notebooks/h200/sst2-fair/04_compare_methods.ipynb": "{}"}
    old = {"results/runs/banking77-mpnet-h200-fair/mclearn-42.json.gz": "old",
           "results/runs/banking77-mpnet-h200-fair-lr/baseline-42.json.gz": "old lr",
           "results/figures/banking77-mpnet-h200-fair/pareto.png": "old figure",
           "results/notebooks/h200/banking77-fair/04_compare_methods.ipynb": "{}",
           "results/runs/banking77-mpnet-h100-fair/uniform-43.json.gz": "a stale file of the same name's study"}
    _files(repo, {**kept, **old, "README.md": "x"})
    _git(repo, "init", "-q")
    _git(repo, "add", "-A")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "committed studies")
    new = {"results/runs/banking77-mpnet-h100-fair/mclearn-42.json.gz": "new",
           "results/runs/banking77-mpnet-h100-fair-lr/baseline-42.json.gz": "new lr",
           "results/figures/banking77-mpnet-h100-fair/pareto.png": "new figure",
           "nb/banking77/04_compare_methods.ipynb": '{"cells": []}'}
    _files(packed, new)
    collected.mkdir()
    with tarfile.open(collected / "banking77.tgz", "w:gz") as tar:
        for name in ("nb", "results"):
            tar.add(packed / name, arcname=name)
    with tarfile.open(collected / "clinc150-partial.tgz", "w:gz") as tar:
        tar.add(packed / "results", arcname="results")
    (collected / "queue.log").write_text("start banking77\n")

    out = subprocess.run(["bash", "benchmarks/gpu_budget_unpack.sh", str(collected)], cwd=repo, check=True,
                         capture_output=True, text=True).stdout

    assert "banking77-mpnet-h200-fair: removed, superseded by banking77-mpnet-h100-fair" in out
    assert "make_readme.py --allow-fewer" in out  # the removed study's runs leave summary.csv
    assert "clinc150-partial.tgz: left packed" in out
    for name in old:
        assert not (repo / name).exists(), name
    assert {name: (repo / name).read_text() for name in kept} == kept
    assert (repo / "results/runs/banking77-mpnet-h100-fair/mclearn-42.json.gz").read_text() == "new"
    assert (repo / "results/runs/banking77-mpnet-h100-fair-lr/baseline-42.json.gz").read_text() == "new lr"
    assert (repo / "results/figures/banking77-mpnet-h100-fair/pareto.png").read_text() == "new figure"
    notebook = repo / "results/notebooks/h100/banking77-fair/04_compare_methods.ipynb"
    assert notebook.read_text() == '{"cells": []}' and not (repo / "nb").exists()
    assert (repo / "results/gpu_tests/fair-queue-banking77-h100.log").read_text() == "start banking77\n"
    removed = _git(repo, "diff", "--cached", "--name-only").split()
    assert sorted(removed) == sorted(n for n in old if "h200" in n)  # staged for the commit beside the new files
