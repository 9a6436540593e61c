"""make_readme.py: the README's generated answer and the generated results/README.md."""
import json
import re

import pandas as pd
import pytest

import make_readme as mr
import mclearn_core as mc
from test_equal_time import _record
from test_results import _budget_run, _budget_study_records
from test_variants import _diagnosed_study, _equal_time_run

README = mc.REPO_ROOT / "README.md"
RESULTS = mc.REPO_ROOT / "results"


def _write_equal_time_studies(results):
    """Two equal-time studies, 3 seeds: on clinc150 `mclearn` is 1.9, 2.0 and 2.1 points above
    short-schedule at 1/2 (a win: 2.00 ± 4.3027 x 0.1 / sqrt 3), `uniform` -0.1, 0, +0.1 (a tie);
    on banking77 both tie, and `infobatch` is 1 point ahead in twice short-schedule's seconds (not
    at equal time)."""
    def write(study, method, budget, seed, test, device="NVIDIA H200", seconds=None):
        label = mc.run_label(method, budget)
        record = {**_record(method, budget, seed, 0.9, [(seconds or 5 * (budget or 1), test)], test=test), "study": study,
                  "device": device, "graphed": True, "examples_backward": 1, "examples_scored": 0, "run_label": label}
        mc.write_json_atomic(mc.run_path(results, study, label, seed), record)

    for seed, base in zip((1, 2, 3), (0.90, 0.91, 0.92)):
        for study in ("clinc150-mpnet-h200-equal-time", "banking77-mpnet-h200-equal-time"):
            write(study, "baseline", 0.0, seed, base)
            write(study, "short-schedule", 0.5, seed, base - 0.02)
            write(study, "uniform", 0.5, seed, base - 0.02 + (0.001 * seed - 0.002))  # -0.1, 0, +0.1 pt: a tie
        write("clinc150-mpnet-h200-equal-time", "mclearn", 0.5, seed, base - 0.02 + 0.02 + 0.001 * (seed - 2))
        write("banking77-mpnet-h200-equal-time", "mclearn", 0.5, seed, base - 0.02)
        write("banking77-mpnet-h200-equal-time", "infobatch", 0.5, seed, base - 0.01, seconds=5)  # ahead, twice the time
    mc.summarize(results, show=False)


def test_the_answer_names_a_method_only_where_its_interval_excludes_zero(tmp_path):
    """The full answer (equal_time_markdown) and the README's short one (answer_markdown) read the
    run files: a method 2 points above short-schedule on every seed is named as beating it, with
    its difference and interval; a tie is not; the README's table fits 110 characters and links
    each data set's run files; the time-to-target table and the profile figure are written."""
    _write_equal_time_studies(tmp_path)
    full = mr.equal_time_markdown(tmp_path)
    assert "`mclearn` on clinc150 at 1/2 (+2.00 pt, [+1.75, +2.25])" in full  # 1.9, 2.0, 2.1: 4.3027 x 0.1 / sqrt 3
    assert "No method beats" not in full and "`uniform` on" not in full.split("Significantly")[0]
    assert "`infobatch` on" not in full.split("Not at equal time")[0]
    assert "`infobatch` on banking77 at 1/2 (+1.00 pt, [+1.00, +1.00], 2.00x its time)" in full
    row = next(line for line in full.splitlines() if line.startswith("| banking77"))
    assert "infobatch" not in row and "over time" not in row  # the table's best other is at equal time
    assert (tmp_path / "figures" / "equal-time" / "performance_profile.png").stat().st_size > 0
    assert (tmp_path / "figures" / "equal-time" / "time_to_target.csv").exists()
    short = mr.answer_markdown(tmp_path, tmp_path.parent)
    flat = " ".join(short.split())  # the prose is wrapped at 110 characters
    assert "`mclearn` beats `short-schedule` in 1 of the 2 (data, budget) cells, with a paired 95 % interval" in flat
    assert "`uniform`" not in short and "no other method does" in flat
    assert "Leads taken in over 1.05x `short-schedule`'s seconds do not count: `infobatch` in 1 ([banking77])." in flat
    table = [line for line in short.splitlines() if line.startswith("|")]
    assert len(table) == 4 and max(map(len, table)) <= 110 and "infobatch" not in "".join(table)
    assert "| [clinc150]  | 1/2      | 89.00 ± 1.00         | mclearn  | +2.00 [+1.75, +2.25]" in short
    assert f"[clinc150]: {tmp_path.name}/runs/clinc150-mpnet-h200-equal-time/" in short.splitlines()


def test_the_short_answer_adds_every_other_winner_of_a_cell(tmp_path):
    """Where two methods beat short-schedule in one cell, the README's table shows both (the best
    first), so every method the answer names has its row."""
    _write_equal_time_studies(tmp_path)
    for seed, base in zip((1, 2, 3), (0.90, 0.91, 0.92)):  # 1.0, 1.1, 1.2 points above: a second win
        label = mc.run_label("infobatch", 0.5)
        record = {**_record("infobatch", 0.5, seed, 0.9, [(2.5, base - 0.01 + 0.001 * (seed - 1))],
                            test=base - 0.01 + 0.001 * (seed - 1)),
                  "study": "clinc150-mpnet-h200-equal-time", "device": "NVIDIA H200", "graphed": True,
                  "examples_backward": 1, "examples_scored": 0, "run_label": label}
        mc.write_json_atomic(mc.run_path(tmp_path, "clinc150-mpnet-h200-equal-time", label, seed), record)
    mc.summarize(tmp_path, show=False)
    short = mr.answer_markdown(tmp_path, tmp_path.parent)
    rows = [line for line in short.splitlines() if line.startswith("| [clinc150]")]
    assert [row.split("|")[4].strip() for row in rows] == ["mclearn", "infobatch"]
    flat = " ".join(short.split())
    assert "`infobatch` beats `short-schedule` in 1 of the 2 (data, budget) cells and `mclearn` in 1," in flat


def test_no_winner_says_so(tmp_path):
    _write_equal_time_studies(tmp_path)
    for path in (tmp_path / "runs" / "clinc150-mpnet-h200-equal-time").glob("mclearn-*"):
        path.unlink()
    mc.summarize(tmp_path, show=False)
    flat = " ".join(mr.answer_markdown(tmp_path).split())
    assert flat.startswith("**No method beats simply training for less time**: in none of the 2 (data, budget) cells")
    assert "No equal-time study yet" in mr.answer_markdown(tmp_path / "empty")


def test_update_readme_rewrites_the_answer_and_results_readme(tmp_path):
    """README.md's answer block and results/README.md come from the run files, summary.csv and
    results/bench/*.json; text outside the markers and inside notes blocks is kept; links are
    relative to the file they are in; a README without the answer markers is refused."""
    results = tmp_path / "results"
    _write_equal_time_studies(results)
    (results / "bench").mkdir(parents=True)
    rows = [{"variant": "v1", "method": "baseline", "device": "GPU X", "batch_size": 64, "train_seconds": 12.5,
             "tokens_per_s": 123456.7, "mfu": 0.12, "n_sequences": 1000},
            {"variant": "v1", "method": "mclearn", "device": "GPU X", "batch_size": 64, "train_seconds": 20.0,
             "tokens_per_s": 1000.0, "mfu": 0.01, "n_sequences": 1000, "overhead_fraction": 0.25,
             "full_pass_replay_seconds": 15.0}]
    (results / "bench" / "gpu-x.json").write_text(json.dumps(rows))
    # a summary.csv study written before time_budget, graphed and test_accuracy existed still renders
    old = pd.read_csv(results / "summary.csv")
    old_rows = pd.DataFrame([{"study": "s", "method": m, "seed": seed, "device": "dev", "train_seconds": t,
                              "accuracy": a, "examples_backward": 10, "examples_scored": 0}
                             for m, t, a in [("baseline", 4.0, 0.9), ("mclearn", 2.0, 0.8)] for seed in (1, 2)])
    pd.concat([old, old_rows]).to_csv(results / "summary.csv", index=False)
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- answer:start -->\nold\n<!-- answer:end -->\nend\n")
    mr.update_readme(readme, results, figures=False)
    text = readme.read_text()
    assert "old" not in text and text.startswith("intro\n") and text.endswith("end\n")
    assert "[clinc150]: results/runs/clinc150-mpnet-h200-equal-time/" in text
    assert "(results/README.md#equal-time)" in text and str(tmp_path) not in text
    body = (results / "README.md").read_text()
    assert "2.00x" in body and "4.00 [4.00–4.00]" in body  # study s: baseline 4 s vs mclearn 2 s
    assert "123,457" in body and "25.0%" in body and "GPU X, 1,000 sequences" in body
    assert "[`runs/s/`](runs/s/)" in body and "(summary.csv)" in body and str(tmp_path) not in body
    assert "[`bench/gpu-x.json`](bench/gpu-x.json)" in body
    # notes are kept across a regeneration; notes of a study that is gone are refused, not dropped
    noted = body.replace("<!-- notes:s:start -->\n", "<!-- notes:s:start -->\nhand-written\n")
    (results / "README.md").write_text(noted)
    mr.update_readme(readme, results, figures=False)
    assert (results / "README.md").read_text() == noted
    (results / "README.md").write_text(noted.replace("notes:s:", "notes:gone:"))
    with pytest.raises(ValueError, match="notes for gone"):
        mr.update_readme(readme, results, figures=False)
    readme.write_text("no markers\n")
    (results / "README.md").write_text(noted)
    with pytest.raises(ValueError, match="answer:start"):
        mr.update_readme(readme, results, figures=False)
    assert (results / "README.md").read_text() == noted  # nothing written when the README is refused


def _write_run(results, record):
    """Write a synthetic run record as a study's run file, with the fields summary.csv and the
    equal-time tables read (device, graphed, test accuracy, an eval curve) where it lacks them."""
    record = {"device": "NVIDIA H200", "graphed": True, "examples_backward": 1, "examples_scored": 0,
              "test_accuracy": record["accuracy"],
              "eval_curve": [{"train_seconds": record["train_seconds"], "accuracy": record["accuracy"]}], **record}
    mc.write_json_atomic(mc.run_path(results, record["study"], record["run_label"], record["seed"]), record)


def _write_ablation_study(results, study="banking77-mpnet-h200-ablation"):
    """An ablation study (one seed, test_variants._diagnosed_study: mclearn-once is chosen) with its baseline."""
    records = _diagnosed_study(study)
    records.append({**records[0], "method": "baseline", "time_budget": 0.0, "run_label": "baseline",
                    "train_seconds": 6.0, "accuracy": 0.9})
    for record in records:
        _write_run(results, record)
    return records


def test_ablation_studies_are_not_equal_time_studies_and_get_the_ablation_section(tmp_path):
    """A one-seed ablation study ran short-schedule too, but it is no equal-time study: the answer's table
    has banking77 once (its equal-time study's 1/2 cell, no "± 0.00" or "—" of one seed), its section has
    no equal-time table; results/README.md gets the Ablation section before the studies (its notes
    block, the rule, the table with the short-schedule row, the choice, the dataset's paragraph and the
    5-seed sentence), and the README's answer names the chosen variant in one line linking it."""
    _write_equal_time_studies(tmp_path)
    records = _write_ablation_study(tmp_path)
    mc.summarize(tmp_path, show=False)
    assert mr.equal_time_studies(tmp_path) == ["banking77-mpnet-h200-equal-time", "clinc150-mpnet-h200-equal-time"]
    short = mr.answer_markdown(tmp_path, tmp_path.parent, "results/README.md")
    table = [line for line in short.splitlines() if line.startswith("| [")]
    assert [line.split("|")[1].strip() for line in table] == ["[banking77]", "[clinc150]"]
    assert "± 0.00" not in short and "ablation/" not in short.split("\n\n")[-1]
    prose = " ".join(short.split("\n\n")[0].split())
    assert prose.endswith(" The one-seed [ablation](results/README.md#ablation) chose `mclearn-once` for the "
                          "`mclearn` preset.")
    body = mr.results_readme(tmp_path, figures=False)
    assert body.index("## Equal time") < body.index("## Ablation\n") < body.index("## Studies")
    ablation = body.split("## Ablation\n")[1].split("## Studies")[0]
    assert "<!-- notes:ablation:start -->" in ablation and mc.ABLATION_RULE in ablation
    assert "Chosen: `mclearn-once`." in ablation and "| short-schedule | (reference)" in ablation
    paragraph = mc.ablation_paragraphs(records, {"banking77": ("banking77-mpnet-h200-equal-time", [])})["banking77"]
    assert ("**banking77** ([`runs/banking77-mpnet-h200-ablation/`](runs/banking77-mpnet-h200-ablation/)): "
            + paragraph) in ablation
    assert paragraph.endswith("5 seeds of the chosen preset not yet run on banking77.")  # its mclearn runs are v1's
    own = body.split("### banking77-mpnet-h200-ablation\n")[1].split("<!-- notes:")[0]
    assert "| mclearn-once" in own and "Equal time against" not in own
    assert "Equal time against" in body.split("### banking77-mpnet-h200-equal-time\n")[1].split("<!-- notes:")[0]
    assert "banking77-mpnet-h200-ablation" not in body.split("## Ablation\n")[0]  # not in the equal-time answer


def test_the_ablation_section_gives_the_5_seed_result_where_the_chosen_presets_runs_exist(tmp_path):
    """With 5 seeds of `mclearn` runs whose config is mclearn-once's in the dataset's equal-time study
    (same prefix as the ablation study), the paragraph ends with their paired result against short-schedule;
    with the previous preset's runs there instead, it says the 5 seeds are not yet run."""
    _write_ablation_study(tmp_path, "sst2-mpnet-h200-ablation")
    seeds, above = (1, 2, 3, 4, 5), (0.008, 0.010, 0.012, 0.010, 0.010)
    runs = [_equal_time_run("baseline", 0.0, s, 0.95) for s in seeds]
    runs += [_equal_time_run("short-schedule", b, s, 0.90) for b in (1 / 3, 0.5) for s in seeds]
    runs += [_equal_time_run("mclearn", 1 / 3, s, 0.90 + d, once_draws=True) for s, d in zip(seeds, above)]
    runs += [_equal_time_run("mclearn", 0.5, s, 0.89, once_draws=True) for s in seeds]
    for record in runs:
        _write_run(tmp_path, record)
    mc.summarize(tmp_path, show=False)
    sentence = ("In `sst2-mpnet-h200-equal-time` (5 seeds, test split), the chosen preset (`mclearn`) against "
                "`short-schedule`: +1.00 pt [+0.82, +1.18] at 1/3 (better) and -1.00 pt [-1.00, -1.00] at 1/2 "
                "(worse), paired 95 % intervals.")
    assert sentence + "\n" in mr.ablation_markdown(tmp_path)
    assert ("Chosen: `mclearn-once`; as the `mclearn` preset, over its seeds in the equal-time studies against "
            "`short-schedule`: better in 1, tied in 0, worse in 1 (sst2 1/2) of its 2 cells.\n") in mr.ablation_markdown(tmp_path)
    for record in runs:
        if record["method"] == "mclearn":
            _write_run(tmp_path, {**record, "config": {**record["config"], "once_draws": False}})
    text = mr.ablation_markdown(tmp_path)
    assert sentence not in text and "5 seeds of the chosen preset not yet run on sst2.\n" in text
    assert mr.ablation_markdown(tmp_path / "empty") == mr.NO_ABLATION


def test_study_sections_put_an_lr_sweep_under_its_study(tmp_path):
    """A "<study>-lr" sweep is rendered as its lr_sweep_table inside its study's section; the
    study's own table is its report table; every study has a heading of its name."""
    for lr, acc in [(1e-5, 0.80), (3e-5, 0.86)]:
        record = {**_budget_run("baseline", 1, 10.0, acc, lr=lr, study="b-lr"), "run_label": mc.lr_run_label(lr)}
        mc.write_json_atomic(mc.run_path(tmp_path, "b-lr", mc.lr_run_label(lr), 1), record)
    lone = {**_budget_run("baseline", 1, 10.0, 0.8, lr=1e-5, study="c-lr"), "run_label": mc.lr_run_label(1e-5)}
    mc.write_json_atomic(mc.run_path(tmp_path, "c-lr", mc.lr_run_label(1e-5), 1), lone)  # no study c: its own section
    for record in _budget_study_records():
        name = f"{record['run_label']}-seed{record['seed']}.json"
        mc.write_json_atomic(tmp_path / "runs" / "b" / name, record)
    mc.summarize(tmp_path, show=False)
    text = mr.study_sections(tmp_path)
    assert re.findall(r"^### (\S+)$", text, re.M) == ["b", "c-lr"]
    study_part, lr_part = text.split("**b-lr**")
    assert lr_part.startswith(" (run files: [`") and "/runs/b-lr/`]" in lr_part
    assert "| chosen" in lr_part and "| 3e-05 | 1      | 86.00" in lr_part and "speed-up" not in lr_part
    assert "/runs/b/`]" in study_part and "| reaches budget" in study_part and "| no (1.25)" in study_part
    assert "| chosen" not in study_part


def test_anchor_is_githubs():
    assert mr.anchor("Equal time") == "equal-time"
    assert mr.anchor("ablation-min-full-1.0-cpu") == "ablation-min-full-10-cpu"
    assert mr.anchor("Step benchmark") == "step-benchmark"


# ----------------------------------------------------------------------------- this repository's files
def _answer_block(text):
    start, end = mr.ANSWER_MARKERS
    return text.split(start, 1)[1].split(end, 1)[0]


def test_readme_answers_on_its_first_screen():
    """README.md: at most 300 lines; its first 40 hold the whole answer block (with its line on the
    ablation's choice), the command that rewrites it and the study command that makes its run files,
    and its one table there is at most 110 characters wide; "Quick start" follows."""
    lines = README.read_text().splitlines()
    assert len(lines) <= 300
    first = "\n".join(lines[:40])
    assert mr.ANSWER_MARKERS[0] in first and mr.ANSWER_MARKERS[1] in first
    assert "`python make_readme.py`" in first and "benchmarks/gpu_budget_study.sh" in first
    assert "[ablation](results/README.md#ablation) chose `" in " ".join(first.split())  # the ablation's one line
    tables = [line for line in lines[:40] if line.startswith("|")]
    assert tables and max(map(len, tables)) <= 110
    assert next(i for i, line in enumerate(lines) if line.startswith("## ")) < 40
    assert [line for line in lines if line.startswith("## ")][1] == "## Quick start"


def test_every_number_of_the_answer_links_run_files_that_exist():
    """In the README's answer block, every table row and every sentence with a digit carries a
    link (a [data] reference or an inline link) into results/, and every link's target exists."""
    block = _answer_block(README.read_text())
    references = dict(re.findall(r"^\[([^\]]+)\]: (\S+)$", block, re.M))
    inline = re.findall(r"\]\(([^)\s]+)\)", block)
    for target in [*references.values(), *inline]:
        assert (README.parent / target.split("#")[0]).exists(), target
    assert references and all(t.startswith("results/runs/") for t in references.values())

    def links_results(text):
        return (any(f"[{label}]" in text for label in references)
                or any(t.startswith("results/") for t in re.findall(r"\]\(([^)\s]+)\)", text)))

    body = [line for line in block.splitlines() if not re.match(r"^\[[^\]]+\]: ", line)]
    rows = [line for line in body if line.startswith("|") and not set(line) <= set("|:- ")]
    assert rows
    for row in rows[1:]:  # the header has no number of a run
        assert links_results(row), row
    prose = " ".join(line for line in body if not line.startswith("|"))
    for sentence in re.split(r"(?<=\.)\*{0,2}\s+", prose):
        if re.search(r"\d", sentence):
            assert links_results(sentence), sentence


def test_the_generated_files_are_up_to_date():
    """results/README.md regenerates to itself (the writer is idempotent and the committed file
    matches the run files), it has a section per study of summary.csv, and the README's answer
    block is what the writer makes of the same files."""
    text = (RESULTS / "README.md").read_text()
    assert mr.results_readme(RESULTS, figures=False) == text
    answer = mr.answer_markdown(RESULTS, README.parent, "results/README.md")
    assert _answer_block(README.read_text()).strip("\n") == answer
    studies = set(pd.read_csv(RESULTS / "summary.csv")["study"])
    headings = set(re.findall(r"^### (\S+)$", text, re.M))
    for study in studies:
        parent = study.removesuffix("-lr")
        assert study in headings or (study.endswith("-lr") and parent in headings and f"**{study}**" in text), study
