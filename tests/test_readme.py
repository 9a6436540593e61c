"""make_readme.py: the README's generated answer and the generated results/README.md."""
import dataclasses
import json
import re
import shutil
from collections import Counter

import pandas as pd
import pytest

import make_readme as mr
import mcstudy as ms
from test_equal_time import _record
from test_results import _budget_run, _budget_study_records
from test_variants import _diagnosed_study, _equal_time_run

README = ms.REPO_ROOT / "README.md"
RESULTS = ms.REPO_ROOT / "results"


def _write_equal_time_studies(results):
    """Two equal-time studies, 3 seeds, short-schedule at 1/2 on each: on clinc150 `mclearn` is 1.9, 2.0
    and 2.1 points above it (t = 34.641 on 2 degrees of freedom, p = 1 - t / sqrt(t^2 + 2) = 0.000832),
    `uniform` 0.6, 1.0, 1.4 above (t = 4.3301, p = 0.04941: its own 95 % interval [+0.01, +1.99] excludes
    0) and `selective-backprop` 0.6, 1.0, 1.4 below in twice the seconds; on banking77 `uniform` is -0.1,
    0, +0.1 and `mclearn` 0 (p 1 each) and `infobatch` 1 point ahead on every seed (p about 0) in twice
    short-schedule's seconds. One Holm family of m = 6: about 0 x 6, 0.000832 x 5 = 0.004 (`mclearn`
    better), 0.04941 x 4 = 0.198 for both 0.049 (`uniform` a tie), then 1. `infobatch`'s lead and
    `selective-backprop`'s deficit are over time (2.00x short-schedule's seconds): no verdict."""
    def write(study, method, budget, seed, test, device="NVIDIA H200", seconds=None):
        label = ms.run_label(method, budget)
        record = {**_record(method, budget, seed, 0.9, [(seconds or 5 * (budget or 1), test)], test=test), "study": study,
                  "device": device, "graphed": True, "examples_backward": 1, "examples_scored": 0, "run_label": label}
        ms.write_json_atomic(ms.run_path(results, study, label, seed), record)

    clinc, banking = "clinc150-mpnet-h200-equal-time", "banking77-mpnet-h200-equal-time"
    for seed, base, spread in zip((1, 2, 3), (0.90, 0.91, 0.92), (-1, 0, 1)):
        short = base - 0.02
        for study in (clinc, banking):
            write(study, "baseline", 0.0, seed, base)
            write(study, "short-schedule", 0.5, seed, short)
        write(clinc, "mclearn", 0.5, seed, short + 0.02 + 0.001 * spread)
        write(clinc, "uniform", 0.5, seed, short + 0.01 + 0.004 * spread)
        write(clinc, "selective-backprop", 0.5, seed, short - 0.01 - 0.004 * spread, seconds=5)
        write(banking, "uniform", 0.5, seed, short + 0.001 * spread)
        write(banking, "mclearn", 0.5, seed, short)
        write(banking, "infobatch", 0.5, seed, base - 0.01, seconds=5)  # ahead, twice the time
    ms.summarize(results, show=False)


def test_the_answer_names_a_method_only_on_a_holm_corrected_verdict(tmp_path):
    """The full answer (equal_time_markdown) and the README's short one (answer_markdown) read the
    run files, one Holm family over both studies: `mclearn`, 2 points above short-schedule on every
    seed, is named as beating it, with its difference, interval and Holm-adjusted p; `uniform` on
    clinc150, whose own interval excludes 0 but whose adjusted p is 0.198, is not (the answer says
    the correction); the README's short answer has one sentence on `mclearn`; its line on leads that
    do not count names `infobatch` (ahead in twice the seconds) and not `selective-backprop`
    (behind in twice the seconds, which the full answer lists as not at equal time); the README's
    table fits 110 characters, gives the Holm p and links each data set's run files; the
    time-to-target table and the profile figure are written."""
    _write_equal_time_studies(tmp_path)
    full = mr.equal_time_markdown(tmp_path)
    assert "Holm-corrected over all 6 comparisons" in full
    assert "`mclearn` on clinc150 at 1/2 (+2.00 pt, [+1.75, +2.25], Holm p 0.004)" in full
    beat = full.split("beat `short-schedule`: ")[1].split(".")[0]
    assert "`uniform`" not in beat and "`infobatch`" not in beat
    over = full.split("so no verdict: ")[1].split(". ")[0]
    assert "`infobatch` on banking77 at 1/2 (+1.00 pt, [+1.00, +1.00], Holm p < 0.001, 2.00x its time)" in over
    assert "`selective-backprop` on clinc150 at 1/2 (-1.00 pt, [-1.99, -0.01], Holm p 0.198, 2.00x its time)" in over
    assert "`mclearn` against `short-schedule`: better in 1, tied in 1, worse in 0 of its 2 cells." in full
    row = next(line for line in full.splitlines() if line.startswith("| banking77"))
    assert "infobatch" not in row and "over time" not in row  # the table's best other is at equal time
    assert (tmp_path / "figures" / "equal-time" / "performance_profile.png").stat().st_size > 0
    assert (tmp_path / "figures" / "equal-time" / "time_to_target.csv").exists()
    short = mr.answer_markdown(tmp_path, tmp_path.parent)
    flat = " ".join(short.split("\n\n")[0].split())  # the prose is wrapped at 110 characters
    assert flat.startswith("**At equal wall-clock on [banking77] and [clinc150], `mclearn` beats `short-schedule` "
                           "in 1 of the 2 cells; no other method does**, on paired t-tests Holm-corrected over all 6.")
    assert "`uniform`" not in flat and "`mclearn`: better in 1, tied in 1, worse in 0 of its 2 cells." in flat
    assert "Leads in over 1.05x `short-schedule`'s seconds do not count: `infobatch` in 1 ([banking77])." in flat
    assert "selective-backprop" not in flat
    table = [line for line in short.splitlines() if line.startswith("|")]
    assert len(table) == 4 and max(map(len, table)) <= 110 and "infobatch" not in "".join(table)
    assert "| [clinc150]  | 1/2      | 89.00 ± 1.00         | mclearn  | +2.00             | 0.004    | better" in short
    assert f"[clinc150]: {tmp_path.name}/runs/clinc150-mpnet-h200-equal-time/" in short.splitlines()


def test_the_short_answer_adds_every_other_winner_of_a_cell(tmp_path):
    """Where two methods beat short-schedule in one cell, the README's table shows both (the best
    first), so every method the answer names has its row."""
    _write_equal_time_studies(tmp_path)
    for seed, base in zip((1, 2, 3), (0.90, 0.91, 0.92)):  # 1.0, 1.1, 1.2 points above: a second win
        label = ms.run_label("infobatch", 0.5)
        record = {**_record("infobatch", 0.5, seed, 0.9, [(2.5, base - 0.01 + 0.001 * (seed - 1))],
                            test=base - 0.01 + 0.001 * (seed - 1)),
                  "study": "clinc150-mpnet-h200-equal-time", "device": "NVIDIA H200", "graphed": True,
                  "examples_backward": 1, "examples_scored": 0, "run_label": label}
        ms.write_json_atomic(ms.run_path(tmp_path, "clinc150-mpnet-h200-equal-time", label, seed), record)
    ms.summarize(tmp_path, show=False)
    short = mr.answer_markdown(tmp_path, tmp_path.parent)
    rows = [line for line in short.splitlines() if line.startswith("| [clinc150]")]
    assert [row.split("|")[4].strip() for row in rows] == ["mclearn", "infobatch"]
    flat = " ".join(short.split())
    assert "`infobatch` beats `short-schedule` in 1 of the 2 cells and `mclearn` in 1;" in flat


def test_no_winner_says_so_and_names_the_closest(tmp_path):
    """Without `mclearn`'s win the answer says no method beats short-schedule and names the lead at
    equal time with the least Holm-adjusted p, not the largest lead: `rho-loss` on banking77 is 3, 0, 6
    points ahead (mean 3, t = 3 / (3 / sqrt 3) = 1.732, p = 1 - 1.732 / sqrt 5 = 0.2254); m = 6: about
    0 x 6, then `uniform` on clinc150 and `selective-backprop` (equal p 0.04941) x 5 = 0.247 and x 4
    raised to it, 0.2254 x 3 = 0.676, then 1."""
    _write_equal_time_studies(tmp_path)
    for path in (tmp_path / "runs" / "clinc150-mpnet-h200-equal-time").glob("mclearn-*"):
        path.unlink()
    study = "banking77-mpnet-h200-equal-time"
    for seed, base, lead in zip((1, 2, 3), (0.90, 0.91, 0.92), (0.03, 0.0, 0.06)):
        label = ms.run_label("rho-loss", 0.5)
        record = {**_record("rho-loss", 0.5, seed, 0.9, [(2.5, base - 0.02 + lead)], test=base - 0.02 + lead),
                  "study": study, "device": "NVIDIA H200", "graphed": True, "examples_backward": 1,
                  "examples_scored": 0, "run_label": label}
        ms.write_json_atomic(ms.run_path(tmp_path, study, label, seed), record)
    ms.summarize(tmp_path, show=False)
    flat = " ".join(mr.answer_markdown(tmp_path).split())
    assert flat.startswith("**No method beats simply training for less time**: in none of the 2 cells of [banking77] "
                           "and [clinc150] is a method better than `short-schedule` on paired t-tests Holm-corrected "
                           "over all 6; the closest: `uniform` on [clinc150] at 1/2 (+1.00 pt, Holm p 0.247).")
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
    # notes are kept across a regeneration; notes of a study that is gone are refused, not dropped,
    # and its empty block goes with it
    noted = body.replace("<!-- notes:s:start -->\n", "<!-- notes:s:start -->\nhand-written\n")
    (results / "README.md").write_text(noted)
    mr.update_readme(readme, results, figures=False)
    assert (results / "README.md").read_text() == noted
    (results / "README.md").write_text(noted.replace("notes:s:", "notes:gone:"))
    with pytest.raises(ValueError, match="notes for gone"):
        mr.update_readme(readme, results, figures=False)
    (results / "README.md").write_text(body.replace("notes:s:", "notes:gone:"))
    mr.update_readme(readme, results, figures=False)
    assert (results / "README.md").read_text() == body
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
    ms.write_json_atomic(ms.run_path(results, record["study"], record["run_label"], record["seed"]), record)


def _write_ablation_study(results, study="banking77-mpnet-h200-ablation"):
    """An ablation study (one seed, test_variants._diagnosed_study: mclearn-once is chosen) with its baseline."""
    records = _diagnosed_study(study)
    records.append({**records[0], "method": "baseline", "time_budget": 0.0, "run_label": "baseline",
                    "train_seconds": 6.0, "accuracy": 0.9})
    for record in records:
        _write_run(results, record)
    return records


def test_ablation_studies_are_not_equal_time_studies_and_get_the_ablation_section(tmp_path, monkeypatch):
    """A one-seed ablation study ran short-schedule too, but it is no equal-time study: the answer's table
    has banking77 once (its equal-time study's 1/2 cell, no "± 0.00" or "—" of one seed), its section has
    no equal-time table; results/README.md gets the Ablation section before the studies (its notes
    block, the rule, the table with the short-schedule row, the choice, the dataset's paragraph and the
    5-seed sentence), and the README's sentence on `mclearn` names the preset its runs trained as (their
    stored configs) beside the chosen variant, linking the ablation, and only the chosen one once they are its."""
    _write_equal_time_studies(tmp_path)
    monkeypatch.setattr(ms, "ABLATION_SETS", ("banking77",))  # the rule's datasets: the one written
    records = _write_ablation_study(tmp_path)
    ms.summarize(tmp_path, show=False)
    assert mr.equal_time_studies(tmp_path) == ["banking77-mpnet-h200-equal-time", "clinc150-mpnet-h200-equal-time"]
    short = mr.answer_markdown(tmp_path, tmp_path.parent, "results/README.md")
    table = [line for line in short.splitlines() if line.startswith("| [")]
    assert [line.split("|")[1].strip() for line in table] == ["[banking77]", "[clinc150]"]
    assert "± 0.00" not in short and "ablation/" not in short.split("\n\n")[-1]
    prose = " ".join(short.split("\n\n")[0].split())
    assert (" `mclearn` (trained as `mclearn-v1`; the [ablation](results/README.md#ablation) has since chosen "
            "`mclearn-once`, not yet run here): better in 1, tied in 1, worse in 0 of its 2 cells.") in prose
    body = mr.results_readme(tmp_path, figures=False)
    assert body.index("## Equal time") < body.index("## Ablation\n") < body.index("## Studies")
    ablation = body.split("## Ablation\n")[1].split("## Studies")[0]
    assert "<!-- notes:ablation:start -->" in ablation and ms.ABLATION_RULE in ablation
    assert "Chosen: `mclearn-once`." in ablation and "| short-schedule | (reference)" in ablation
    paragraph = mr.ablation_paragraphs(records, {"banking77": ("banking77-mpnet-h200-equal-time", [])})["banking77"]
    assert ("**banking77** ([`runs/banking77-mpnet-h200-ablation/`](runs/banking77-mpnet-h200-ablation/)): "
            + paragraph) in ablation
    assert paragraph.endswith("5 seeds of the chosen preset not yet run on banking77.")  # its mclearn runs are v1's
    own = body.split("### banking77-mpnet-h200-ablation\n")[1].split("<!-- notes:")[0]
    assert "| mclearn-once" in own and "Equal time against" not in own
    assert "Equal time against" in body.split("### banking77-mpnet-h200-equal-time\n")[1].split("<!-- notes:")[0]
    assert "banking77-mpnet-h200-ablation" not in body.split("## Ablation\n")[0]  # not in the equal-time answer
    for study in ("clinc150-mpnet-h200-equal-time", "banking77-mpnet-h200-equal-time"):
        for record in ms.load_runs(tmp_path, study):  # the same runs, trained as the chosen preset
            if record["method"] == "mclearn":
                _write_run(tmp_path, {**record, "config": {**(record.get("config") or {}), "once_draws": True}})
    prose = " ".join(mr.answer_markdown(tmp_path, tmp_path.parent, "results/README.md").split("\n\n")[0].split())
    assert (" `mclearn` (`mclearn-once` since the [ablation](results/README.md#ablation)): better in 1, tied in 1, "
            "worse in 0 of its 2 cells.") in prose


def test_the_mclearn_sentence_tallies_per_preset_where_its_runs_trained_as_two(tmp_path, monkeypatch):
    """With clinc150's `mclearn` runs re-run as the ablation's choice (mclearn-once: their stored
    configs) and banking77's still the preset before it (mclearn-v1), the README's sentence on
    `mclearn` tallies each preset apart, the choice first, each over the cells its own runs trained
    as (the README's answer and results/README's equal-time section alike); once one of banking77's
    seeds is the choice's too, that cell is tallied as mixing presets, naming them, not as either."""
    _write_equal_time_studies(tmp_path)
    monkeypatch.setattr(ms, "ABLATION_SETS", ("banking77",))
    _write_ablation_study(tmp_path)
    ms.summarize(tmp_path, show=False)

    def relabel(study, seeds=(1, 2, 3)):  # the same runs, trained as the chosen preset
        for record in ms.load_runs(tmp_path, study):
            if record["method"] == "mclearn" and record["seed"] in seeds:
                _write_run(tmp_path, {**record, "config": {**(record.get("config") or {}), "once_draws": True}})

    def prose():
        return " ".join(mr.answer_markdown(tmp_path, tmp_path.parent, "results/README.md").split("\n\n")[0].split())

    relabel("clinc150-mpnet-h200-equal-time")
    link = "[ablation](results/README.md#ablation)"
    assert (f" `mclearn` as `mclearn-once` (the {link}'s choice, on [clinc150]): better in 1, tied in 0, worse in 0 "
            "of its 1 cell; as `mclearn-v1` (the preset before it, on [banking77]; not yet re-run with the choice): "
            "better in 0, tied in 1, worse in 0 of its 1 cell.") in prose()
    details = " ".join(mr.equal_time_markdown(tmp_path, figures=False).split())  # results/README's sentence
    assert (" `mclearn` as `mclearn-once` (the [ablation](#ablation)'s choice, on [clinc150]): better in 1, tied in "
            "0, worse in 0 of its 1 cell; as `mclearn-v1` (the preset before it, on [banking77];") in details
    relabel("banking77-mpnet-h200-equal-time", seeds=(1,))
    assert (f" `mclearn` as `mclearn-once` (the {link}'s choice, on [clinc150]): better in 1, tied in 0, worse in 0 "
            "of its 1 cell; in cells whose seeds mix presets ([banking77] 1/2: `mclearn-once`, `mclearn-v1`): "
            "better in 0, tied in 1, worse in 0 of its 1 cell.") in prose()


def test_the_ablation_section_gives_the_5_seed_result_where_the_chosen_presets_runs_exist(tmp_path, monkeypatch):
    """With 5 seeds of `mclearn` runs whose config is mclearn-once's in the dataset's equal-time study
    (same prefix as the ablation study), the paragraph ends with their paired result against short-schedule,
    its verdicts Holm-adjusted over the answer's family (the study's 4 comparisons, `uniform`'s included,
    not the preset's 2); with the previous preset's runs there instead, it says the 5 seeds are not yet run."""
    monkeypatch.setattr(ms, "ABLATION_SETS", ("sst2",))  # the rule's datasets: the one written
    _write_ablation_study(tmp_path, "sst2-mpnet-h200-ablation")
    seeds, above = (1, 2, 3, 4, 5), (0.008, 0.010, 0.012, 0.010, 0.010)
    runs = [_equal_time_run("baseline", 0.0, s, 0.95) for s in seeds]
    runs += [_equal_time_run("short-schedule", b, s, 0.90) for b in (1 / 3, 0.5) for s in seeds]
    runs += [_equal_time_run("mclearn", 1 / 3, s, 0.90 + d, once_draws=True) for s, d in zip(seeds, above)]
    runs += [_equal_time_run("mclearn", 0.5, s, 0.89, once_draws=True) for s in seeds]
    runs += [_equal_time_run("uniform", b, s, 0.90) for b in (1 / 3, 0.5) for s in seeds]
    for record in runs:
        _write_run(tmp_path, record)
    ms.summarize(tmp_path, show=False)
    sentence = ("In `sst2-mpnet-h200-equal-time` (5 seeds, test split), the chosen preset (`mclearn`) against "
                "`short-schedule`: +1.00 pt [+0.82, +1.18] at 1/3 (better) and -1.00 pt [-1.00, -1.00] at 1/2 "
                "(worse), paired 95 % intervals, verdicts on the Holm-adjusted p over 4 comparisons.")
    assert sentence + "\n" in mr.ablation_markdown(tmp_path)
    assert ("Chosen: `mclearn-once`; as the `mclearn` preset, over its seeds in the studies the paragraphs below end "
            "with, against `short-schedule`: better in 1, tied in 0, worse in 1 (sst2 1/2) of its 2 cells.\n") \
        in mr.ablation_markdown(tmp_path)
    for record in runs:
        if record["method"] == "mclearn":
            _write_run(tmp_path, {**record, "config": {**record["config"], "once_draws": False}})
    text = mr.ablation_markdown(tmp_path)
    assert sentence not in text and "5 seeds of the chosen preset not yet run on sst2.\n" in text
    assert mr.ablation_markdown(tmp_path / "empty") == mr.NO_ABLATION


def test_the_mclearn_preset_is_the_committed_ablations_choice():
    """The `mclearn` preset (the Config defaults) has on exactly the parts of the variant the committed
    ablation's rule chose (ms.variant_of of its config): changing the defaults, or committing an
    ablation that chooses another variant, fails here until the two agree."""
    chosen, _ = mr.ablation_choice(ms.REPO_ROOT / "results")
    assert chosen is not None  # the committed ablation ran on every dataset of its rule
    preset = ms.config_for_method(ms.make_config("cpu-smoke"), "mclearn")
    assert ms.variant_of(dataclasses.asdict(preset)) == chosen


def test_an_ablation_without_every_dataset_of_the_rule_makes_no_choice(tmp_path):
    """One dataset of ms.ABLATION_SETS ran: the table marks the leader "leading", nothing "chosen"; the
    section says which datasets are still to run and that the `mclearn` preset stays the one the
    ablation started from; the paragraphs describe the leader without a 5-seed confirmation; the
    answer names the preset and that the ablation has no choice yet."""
    records = _write_ablation_study(tmp_path)
    _write_equal_time_studies(tmp_path)
    ms.summarize(tmp_path, show=False)
    table = ms.ablation_table(records, ms.ABLATION_SETS)
    assert table.attrs["chosen"] is None and table.attrs["leader"] == "mclearn-once"
    assert table.attrs["missing"] == [d for d in ms.ABLATION_SETS if d != "banking77"]
    assert list(table["chosen"]).count("leading") == 1 and "chosen" not in set(table["chosen"])
    assert ms.ablation_table(records).attrs["chosen"] == "mclearn-once"  # no sets named: every cell there is
    text = mr.ablation_markdown(tmp_path)
    assert ("No choice yet: clinc150, sst2, sst2-noisy20 have no runs (1 of the rule's 4 datasets ran; "
            "`bash benchmarks/gpu_ablation.sh`), so the `mclearn` preset stays `mclearn-v1`. Leading over the 2 "
            "cells so far: `mclearn-once`.\n") in text
    assert "Chosen:" not in text and "5 seeds of the chosen preset" not in text
    assert "**banking77** (" in text and "): `mclearn-once` against `short-schedule` and `mclearn-v1` on banking77" in text
    assert mr.ablation_choice(tmp_path) == (None, "mclearn-v1")
    flat = " ".join(mr.answer_markdown(tmp_path, tmp_path.parent, "results/README.md").split())
    assert " `mclearn` (`mclearn-v1`; the [ablation](results/README.md#ablation) has no choice yet)" in flat


def test_study_sections_put_an_lr_sweep_under_its_study(tmp_path):
    """A "<study>-lr" sweep is rendered as its lr_sweep_table inside its study's section; the
    study's own table is its report table; every study has a heading of its name."""
    for lr, acc in [(1e-5, 0.80), (3e-5, 0.86)]:
        record = {**_budget_run("baseline", 1, 10.0, acc, lr=lr, study="b-lr"), "run_label": ms.lr_run_label(lr)}
        ms.write_json_atomic(ms.run_path(tmp_path, "b-lr", ms.lr_run_label(lr), 1), record)
    lone = {**_budget_run("baseline", 1, 10.0, 0.8, lr=1e-5, study="c-lr"), "run_label": ms.lr_run_label(1e-5)}
    ms.write_json_atomic(ms.run_path(tmp_path, "c-lr", ms.lr_run_label(1e-5), 1), lone)  # no study c: its own section
    for record in _budget_study_records():
        name = f"{record['run_label']}-seed{record['seed']}.json.gz"
        ms.write_json_atomic(tmp_path / "runs" / "b" / name, record)
    ms.summarize(tmp_path, show=False)
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
    """README.md: at most 300 lines; its first 40 rendered lines (link definitions do not show) hold
    the whole answer block (its verdicts Holm-corrected and saying so, its sentence on `mclearn`
    naming the ablation's choice), the command that rewrites it and the study command that makes its
    run files, with a link to where the model comes from, how the table's method is chosen and a link
    to the glossary; its one table there is at most 110 characters wide; "Quick start" follows. The glossary defines every method the answer block names, and says
    where to get the model."""
    lines = README.read_text().splitlines()
    assert len(lines) <= 300
    shown = [line for line in lines if not re.match(r"\[[^\]]+\]: \S", line)]  # link definitions do not render
    first = "\n".join(shown[:40])
    assert mr.ANSWER_MARKERS[0] in first and mr.ANSWER_MARKERS[1] in first
    assert "`python make_readme.py`" in first and "benchmarks/gpu_budget_study.sh" in first
    flat = " ".join(first.split())
    assert "Holm-corrected over all" in flat and "the table's method the one at equal time with the largest" in flat
    link = r"\[ablation\]\(results/README.md#ablation\)"
    assert re.search(rf" `mclearn` \((`[\w-]+` since the {link}|`[\w-]+`; the {link} has no choice yet|trained as "
                     rf"`[\w-]+`; the {link} has since chosen `[\w-]+`, not yet run here)\): better in \d+, "
                     r"tied in \d+, worse in \d+", flat) or re.search(  # or one tally per preset, the choice first
        rf" `mclearn` as `[\w-]+` \(the {link}'s choice, on [^)]*\): better in \d+, tied in \d+, worse in \d+", flat)
    assert "[glossary](docs/glossary.md)" in flat and "[MODEL_DIR](docs/glossary.md#the-model)" in flat
    glossary = (ms.REPO_ROOT / "docs" / "glossary.md").read_text()
    assert "\n## The model\n" in glossary and "sentence-transformers/all-mpnet-base-v2" in glossary
    named = set(re.findall(r"`([a-z0-9-]+)`", _answer_block(README.read_text())))
    assert named & set(ms.METHODS)
    for method in named & set(ms.METHODS):
        assert f"`{method}`" in glossary.split("## The model")[0], method
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


def test_the_docs_name_only_run_folders_the_tree_holds():
    """Every run folder the hand-written docs name (`results/runs/<study>/`, a glob such as
    `*-fair-ablation` included) matches at least one folder of the tree: a study replaced by a re-run
    leaves no prose citing numbers from files that are gone."""
    root = README.parent
    named = {}
    for path in [README, *sorted((root / "docs").glob("*.md"))]:
        for folder in re.findall(r"(?<![\w-])results/runs/([A-Za-z0-9*._-]+)/", path.read_text()):
            named.setdefault(folder, path.name)
    assert "*-fair-ablation" in named  # docs/method.md's scoring share: the check reads the docs' own names
    missing = {folder: doc for folder, doc in named.items() if not list((root / "results" / "runs").glob(folder))}
    assert not missing, f"run folders named in the docs that the tree does not hold: {missing}"


GPU_NAME = re.compile(r"\b(?:H100|H200|A100|T4)\b")


def _named_commits(text: str) -> set[str]:
    """Return the short commits a hand-written note names: 7 hex digits with a letter and a digit among
    them, or any 7 after "commit"."""
    loose = re.findall(r"(?<![\w/.#-])([0-9a-f]{7})(?![\w/-])(?!\.\w)", text)
    return ({c for c in loose if re.search(r"[a-f]", c) and re.search(r"\d", c)}
            | set(re.findall(r"\bcommits? ([0-9a-f]{7})\b", text)))


def test_hand_written_provenance_names_the_commits_and_gpus_of_its_run_files():
    """results/README.md's notes blocks are hand-written, so provenance in them can drift from the run
    files. A study's block, the previous protocol's (its studies) and the ablation's (every ablation
    study) name exactly the commits their run files and lr sweeps record, where they name any, and
    exactly their GPUs, where they name any; each study the answer reads says which commit made it."""
    text = (RESULTS / "README.md").read_text()
    runs_dir = RESULTS / "runs"
    fair, previous = mr.answer_studies(RESULTS)
    ablations = sorted(p.name for p in runs_dir.iterdir() if ms.is_ablation_study(p.name))
    covered = {mr.PREVIOUS_KEY: previous, mr.ABLATION_KEY: ablations}
    notes = {m["key"]: m["body"] for m in mr.NOTES.finditer(text)}
    checked, dated = set(), set()
    for key, body in notes.items():
        studies = covered.get(key, [key] if (runs_dir / key).is_dir() else [])
        named_commits, named_gpus = _named_commits(body), set(GPU_NAME.findall(body))
        if not studies or not (named_commits or named_gpus):
            continue
        records = [r for s in studies for sweep in (s, f"{s}-lr") if (runs_dir / sweep).is_dir()
                   for r in ms.load_runs(RESULTS, sweep)]
        commits = {r["versions"]["git_commit"][:7] for r in records}
        gpus = {g for r in records for g in GPU_NAME.findall(r["device"])}
        if named_commits:
            assert named_commits == commits, f"notes:{key} name {sorted(named_commits)}; runs: {sorted(commits)}"
            dated.add(key)
        if named_gpus:
            assert named_gpus == gpus, f"notes:{key} name {sorted(named_gpus)}; runs: {sorted(gpus)}"
        checked.add(key)
    assert {mr.PREVIOUS_KEY, mr.ABLATION_KEY} <= checked
    assert set(fair) <= dated, f"answer studies whose notes name no commit: {sorted(set(fair) - dated)}"


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


# ----------------------------------------------------------------------------- the fair protocol's studies
def _write_fair_study(results, study="clinc150-mpnet-h200-fair"):
    """A fair-protocol study (test_equal_time._fair's runs, 3 seeds) with its tuning runs in "-lr"
    (short-schedule's choice interior, infobatch's at an edge whose next lr diverged, mclearn's at
    the top of its grid, unresolved): short-schedule on target; `mclearn` 1, 2, 3 points above it on target (p 0.0742, a tie); `infobatch`
    1.9, 2.0, 2.1 above in 1.1 times its target seconds (over time)."""
    from test_equal_time import _fair

    ref = (0.88, 0.89, 0.90)
    records = [_fair("baseline", 0.0, s, 0.95, study=study) for s in (1, 2, 3)]
    records += [_fair("short-schedule", 0.5, s, a, study=study) for s, a in zip((1, 2, 3), ref)]
    records += [_fair("mclearn", 0.5, s, a + d, study=study, score=0.1)
                for s, a, d in zip((1, 2, 3), ref, (0.01, 0.02, 0.03))]
    records += [_fair("infobatch", 0.5, s, a + d, ratio=1.1, study=study)
                for s, a, d in zip((1, 2, 3), ref, (0.019, 0.020, 0.021))]
    for record in records:
        _write_run(results, {**record, "accuracy": record["test_accuracy"], "config": {"lr": 1e-4, "once_draws": True}})
    grids = {"short-schedule": (0.90, 0.91, 0.89), "infobatch": (0.90, 0.91, float("nan")), "mclearn": (0.90, 0.91)}
    for method, accuracies in grids.items():
        for lr, accuracy in zip((1e-4, 2e-4, 4e-4), accuracies):
            _write_run(results, {**_budget_run(method, 1, 1.0, accuracy, budget=0.5, lr=lr, study=f"{study}-lr"),
                                 "run_label": ms.lr_run_label(lr, ms.run_label(method, 0.5)), "protocol": "fair"})


def test_fair_studies_form_the_answer_and_the_equal_time_studies_become_the_previous_protocol(tmp_path, monkeypatch):
    """With a study named <...>-fair, the answer reads the fair studies alone (their own Holm family,
    the fair time rule: a lead over 3 % above its target does not count) and says where the method
    ahead in most cells of the previous protocol (before its correction) stands now, linking that
    protocol's section; results/README.md gets that section, with the line on what changed and the
    older studies' verdicts in their own family (m = 6); the fair study's section shows its equal-time
    table with what the runs did, the paragraph on what selection did in its `mclearn` runs (these
    carry no selection record: it says so) and its lr table with the edges named; the ablation's
    paragraph on clinc150 reads the chosen preset's seeds from the fair study of its dataset and
    model, here on another GPU than the ablation's (3 of the 5 it needs)."""
    _write_equal_time_studies(tmp_path)
    _write_fair_study(tmp_path)
    monkeypatch.setattr(ms, "ABLATION_SETS", ("clinc150",))  # the rule's datasets: the one written
    _write_ablation_study(tmp_path, "clinc150-mpnet-h100-ablation")
    ms.summarize(tmp_path, show=False)
    assert mr.answer_studies(tmp_path) == (["clinc150-mpnet-h200-fair"], ["banking77-mpnet-h200-equal-time",
                                                                           "clinc150-mpnet-h200-equal-time"])
    short = mr.answer_markdown(tmp_path, tmp_path.parent, "results/README.md")
    flat = " ".join(short.split("\n\n")[0].split())
    assert "of [clinc150] is a method better" in flat and "Holm-corrected over all 2; the closest: `mclearn`" in flat
    assert "Leads in over 3% above their target seconds do not count: `infobatch` in 1 ([clinc150])." in flat
    # the previous protocol's leader on uncorrected intervals at equal time: mclearn and uniform on clinc150, one
    # cell each (the first by name), not infobatch (its lead was over time); its verdict under the fair protocol
    assert ("`mclearn`, ahead in 1 cell of the [previous protocol](results/README.md#previous-protocol) on "
            "uncorrected 95 % intervals: better in 0, tied in 1, worse in 0 of its 1 cell here.") in flat
    assert f"[clinc150]: {tmp_path.name}/runs/clinc150-mpnet-h200-fair/" in short.splitlines()
    assert "[banking77]" not in short
    body = mr.results_readme(tmp_path, figures=False)
    assert body.index("## Equal time") < body.index("## Previous protocol\n") < body.index("## Studies")
    answer = body.split("## Equal time\n")[1].split("## Previous protocol\n")[0]
    previous = body.split("## Previous protocol\n")[1].split("## Studies")[0]
    assert "Holm-corrected over all 2 comparisons" in answer and "-equal-time`" not in answer
    assert mr.PREVIOUS_CHANGES in previous and "<!-- notes:previous-protocol:start -->" in previous
    assert "Holm-corrected over all 6 comparisons" in previous
    assert "`mclearn` on clinc150 at 1/2 (+2.00 pt, [+1.75, +2.25], Holm p 0.004)" in previous
    fair = body.split("### clinc150-mpnet-h200-fair\n")[1].split("<!-- notes:")[0]
    assert "over the 2 comparisons of its protocol's studies" in fair
    assert fair.index("Equal time against") < fair.index("What selection did in `mclearn`'s runs") \
        < fair.index("Its learning-rate sweep")
    assert ("At 1/2 (3 seeds, as `mclearn-once`, without the pays-for-itself switch): its run files carry no "
            "selection record") in fair
    assert ("It ran 50 [50–50] updates against `short-schedule`'s 50 [50–50], +0 [+0, +0] on the same seed "
            "(3 pairs). Scoring took 0.100 s [0.100–0.100]; its run files carry no update seconds.") in fair
    assert "| s / target   | on target   | updates   | lr last / peak   |" in fair
    assert "| 1/2      | infobatch " in fair and "| over time " in fair
    assert "| lr (eval accuracy %)" in fair and "| 0.0001: 90.00, 0.0002: 91.00, 0.0004: diverged " in fair
    assert ("At a grid edge bounded by a diverged next lr: `infobatch` at 1/2 (edge: next diverged). **At a grid "
            "edge, unresolved**: `mclearn` at 1/2 (edge: highest).") in fair
    assert ("5 seeds of the chosen preset not yet run on clinc150 (`mclearn` in `clinc150-mpnet-h200-fair` has 3 "
            "at 1/2).") in body.split("## Ablation\n")[1]
    older = body.split("### clinc150-mpnet-h200-equal-time\n")[1].split("<!-- notes:")[0]
    assert "over the 6 comparisons of its protocol's studies" in older and "s / target" not in older


def test_an_lr_table_with_every_choice_interior_says_so():
    runs = [{**_budget_run("uniform", 1, 1.0, accuracy, budget=1 / 3, lr=lr), "time_budget": 1 / 3}
            for lr, accuracy in ((1e-4, 0.90), (2e-4, 0.91), (4e-4, 0.89))]
    text = mr.lr_table_markdown(runs)
    assert "| uniform  | 1/3      |" in text and text.endswith("\n\nEvery choice is interior to its grid.\n")


def test_a_minute_long_study_says_how_the_verdicts_and_fixed_costs_change_with_scale(tmp_path):
    """Two fair studies of one dataset: sst2 (the full fine-tune's reference 10 s, `mclearn` 1, 2, 3
    points above short-schedule at 1/2: a tie, p 0.074; `uniform` +0.1, 0, -0.1: a tie) and
    sst2-long (reference 40 s, its baseline's runs 10 s; `mclearn` 1.9, 2.0, 2.1 above: better;
    `uniform` -0.1, 0, +0.1: a tie). The answer says 1 of the 2 comparisons they share keeps its
    verdict (`mclearn` tie -> better, Holm over all 4); on two GPUs it names each study's. Fixed costs per cell: warm-up+capture 1 % (sst2-long) or 10 % (sst2), plus
    mclearn's scoring 0.05 s of its 5 s (1 %): 2.0 % on sst2-long, 11.0 % on sst2. At 1/2 the
    sentence names `uniform` at 6.0 %, the one at or over the 5 % limit; with `uniform` at 4.9 % every
    method is under it; at 1/3, where no study has cells, there is no sentence."""
    from test_equal_time import _fair

    def study(name, reference, diffs, startup, methods):
        ref = (0.88, 0.89, 0.90)
        records = [_fair("baseline", 0.0, s, 0.95, study=name, startup=startup) for s in (1, 2, 3)]
        records += [_fair("short-schedule", 0.5, s, a, study=name, startup=startup) for s, a in zip((1, 2, 3), ref)]
        for method, shift in methods.items():
            records += [_fair(method, 0.5, s, a + d, study=name, startup=shift, score=0.05 if method == "mclearn" else None)
                        for s, a, d in zip((1, 2, 3), ref, diffs[method])]
        for record in records:
            if record.get("time_target"):
                record["time_target"]["reference_seconds"] = reference
            _write_run(tmp_path, {**record, "accuracy": record["test_accuracy"], "config": {"lr": 1e-4}})

    study("sst2-mpnet-h200-fair", 10.0, {"mclearn": (0.01, 0.02, 0.03), "uniform": (0.001, 0, -0.001)}, 0.10,
          {"mclearn": 0.10, "uniform": 0.10})
    study("sst2-long-mpnet-h200-fair", 40.0, {"mclearn": (0.019, 0.020, 0.021), "uniform": (-0.001, 0, 0.001)}, 0.01,
          {"mclearn": 0.01, "uniform": 0.06})
    ms.summarize(tmp_path, show=False)
    found = mr.equal_time_verdicts(tmp_path)
    assert found["reference_seconds"] == {"sst2-long": 40.0, "sst2": 10.0}
    short = " ".join(mr.answer_markdown(tmp_path, tmp_path.parent).split("\n\n")[0].split())
    assert ("From seconds to a minute: the full fine-tune trains for 40.0 s on [sst2-long] against 10.0 s on [sst2], "
            "and 1 of the 2 comparisons they share keep their verdict; changed: `mclearn` at 1/2 tie → better.") in short
    on_two_gpus = {**found, "studies": [(study, name, "H100" if name == "sst2-long" else "H200")
                                        for study, name, _ in found["studies"]]}
    assert mr.scale_sentence(on_two_gpus).startswith("From seconds to a minute: the full fine-tune trains for 40.0 s "
                                                     "on [sst2-long] (H100) against 10.0 s on [sst2] (H200), and 1 of")
    fixed = mr.fixed_cost_table(found).set_index(["budget", "method"])
    assert list(fixed.columns) == ["sst2-long", "sst2"]
    assert fixed.loc[("1/2", "mclearn"), "sst2-long"] == "2.0 %" and fixed.loc[("1/2", "mclearn"), "sst2"] == "11.0 %"
    assert fixed.loc[("1/2", "uniform"), "sst2-long"] == "6.0 %" and fixed.loc[("1/2", "uniform"), "sst2"] == "10.0 %"
    assert fixed.loc[("1/2", "uniform"), "sst2-long"] == "6.0 %"
    assert mr.fixed_cost_sentence(found, "1/3") == ""
    assert mr.fixed_cost_sentence(found, "1/2") == "On sst2-long at 1/2 the fixed costs reach 5 % of train seconds for " \
                                                   "`uniform` 6.0 %."
    body = mr.results_readme(tmp_path, figures=False).split("## Equal time\n")[1].split("## Ablation")[0]
    assert "On sst2-long at 1/2 the fixed costs reach 5 %" not in body  # the sentence is the 1/3 cells'
    found["tables"]["sst2-long-mpnet-h200-fair"]["warm-up+capture"] = \
        found["tables"]["sst2-long-mpnet-h200-fair"]["warm-up+capture"].replace("6.0 %", "4.9 %")
    assert mr.fixed_cost_sentence(found, "1/2") == ("On sst2-long at 1/2 the fixed costs are under 5 % of train "
                                                    "seconds for every method.")
    assert "Fixed costs, as a share of train seconds" in body and "| budget   | method         | sst2-long   | sst2" in body


# ----------------------------------------------------------------------------- one render's run records
def _every_section(tmp_path, monkeypatch):
    """A results folder every section reads run files from (the fair study and its lr sweep, the
    previous protocol's two studies, an ablation whose table makes a choice) and a README with its
    answer markers; return (results, readme)."""
    results, readme = tmp_path / "results", tmp_path / "README.md"
    _write_equal_time_studies(results)
    _write_fair_study(results)
    monkeypatch.setattr(ms, "ABLATION_SETS", ("clinc150",))  # the rule's datasets: the one written
    _write_ablation_study(results, "clinc150-mpnet-h200-ablation")
    readme.write_text("intro\n<!-- answer:start -->\n<!-- answer:end -->\n")
    return results, readme


def test_one_render_reads_each_run_file_once_and_builds_the_ablation_table_once(tmp_path, monkeypatch):
    """make_readme.py (publish: summary.csv, then results/README.md and the README's answer) decodes
    each run file once, though several sections read the same study (the answer, the full equal-time
    answer, the previous protocol's, the ablation, the study sections): one RunStore per render,
    passed down; and it builds the ablation's table over ms.ABLATION_SETS once, for the answer's
    `mclearn` sentence and the Ablation section. update_readme alone reads each at most once. A store
    of another results folder is refused."""
    results, readme = _every_section(tmp_path, monkeypatch)
    reads, tables = Counter(), []
    real_read, real_table = ms.read_run, ms.ablation.ablation_table
    monkeypatch.setattr(ms.tables, "read_run", lambda path: reads.update([path]) or real_read(path))
    monkeypatch.setattr(ms.ablation, "ablation_table",
                        lambda records, sets=(): tables.append(tuple(sets)) or real_table(records, sets))
    assert mr.main(["--results", str(results), "--readme", str(readme)]) == 0
    assert sorted(reads) == sorted(results.glob(f"runs/*/*{ms.RUN_FILE_SUFFIX}")) and set(reads.values()) == {1}
    assert tables.count(ms.ABLATION_SETS) == 1
    assert "`clinc150-mpnet-h200-fair`" in (results / "README.md").read_text()
    assert "(`mclearn-once` since the [ablation](results/README.md#ablation))" in " ".join(readme.read_text().split())
    assert "Chosen: `mclearn-once`" in (results / "README.md").read_text()  # the one table, read twice
    reads.clear()
    tables.clear()
    mr.update_readme(readme, results, figures=False)
    assert reads and max(reads.values()) == 1 and tables.count(ms.ABLATION_SETS) == 1
    with pytest.raises(ValueError, match="not of .*: pass a RunStore of"):
        mr.answer_markdown(results, store=mr.RunStore(tmp_path / "other"))


def test_a_second_render_in_the_same_process_reads_the_run_files_as_they_are_then(tmp_path, monkeypatch):
    """No run record outlives its render: after a run file changes (one `mclearn` run of the fair
    study 10 points better), a second render in the same process writes what a render of a fresh
    copy of the changed folder writes, not what the first render wrote."""
    results, readme = _every_section(tmp_path, monkeypatch)
    assert mr.main(["--results", str(results), "--readme", str(readme)]) == 0
    first = readme.read_text(), (results / "README.md").read_text()
    path = ms.run_path(results, "clinc150-mpnet-h200-fair", ms.run_label("mclearn", 0.5), 1)
    record = ms.read_run(path)
    ms.write_json_atomic(path, {**record, "accuracy": record["accuracy"] + 0.1,
                                "test_accuracy": record["test_accuracy"] + 0.1})
    copy = tmp_path / "copy"
    shutil.copytree(results, copy / "results")
    shutil.copy(readme, copy / "README.md")
    assert mr.main(["--results", str(results), "--readme", str(readme)]) == 0
    second = readme.read_text(), (results / "README.md").read_text()
    assert mr.main(["--results", str(copy / "results"), "--readme", str(copy / "README.md")]) == 0
    assert second == ((copy / "README.md").read_text(), (copy / "results" / "README.md").read_text())
    assert second[0] != first[0] and second[1] != first[1]
