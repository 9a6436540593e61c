"""The modules read in call order: no function or method of mclearn_core.py uses a module-level
name defined in a later section (helpers, pool stream, draw and weights, costs and budget solver,
policy, trainer, diagnostics), nor one of mclearn_paper.py (its draw and weights, model, rules,
trainer).

Sections are the `# ====` / `# N. title` / `# ====` headers. A name counts as used when a function
body loads it and does not bind it itself (an argument or an assignment of the same name)."""
import ast
import re
from pathlib import Path

import pytest

CORE = Path(__file__).resolve().parents[1] / "mclearn_core.py"
PAPER = CORE.with_name("mclearn_paper.py")


def sections(lines: list[str]) -> list[tuple[int, str]]:
    """Return (first line number, title) of each section header, in file order."""
    found = []
    for i in range(len(lines) - 2):
        if re.fullmatch(r"# =+", lines[i]) and re.fullmatch(r"# =+", lines[i + 2]):
            match = re.fullmatch(r"# \d+\. (.*)", lines[i + 1])
            if match:
                found.append((i + 2, match.group(1)))
    return found


def later_section_uses(source: str) -> list[str]:
    """Return "function uses NAME (section A -> section B)" for every use of a module-level name
    defined in a later section than the function's."""
    lines, tree = source.splitlines(), ast.parse(source)
    heads = sections(lines)

    def section_of(line: int) -> int:
        return max([k for k, (start, _) in enumerate(heads) if start <= line], default=-1)

    defined: dict[str, int] = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names = [node.name]
        elif isinstance(node, ast.Assign):
            names = [t.id for t in node.targets if isinstance(t, ast.Name)]
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            names = [node.target.id]
        else:
            names = []
        for name in names:
            defined.setdefault(name, node.lineno)

    def functions():
        for node in tree.body:
            if isinstance(node, ast.FunctionDef):
                yield node.name, node
            elif isinstance(node, ast.ClassDef):
                for item in node.body:
                    if isinstance(item, ast.FunctionDef):
                        yield f"{node.name}.{item.name}", item

    found = []
    for owner, fn in functions():
        own = section_of(fn.lineno)
        local = {a.arg for sub in ast.walk(fn) if isinstance(sub, ast.arguments)
                 for a in [*sub.posonlyargs, *sub.args, *sub.kwonlyargs, *filter(None, [sub.vararg, sub.kwarg])]}
        local |= {sub.id for sub in ast.walk(fn) if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store)}
        for sub in ast.walk(fn):
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Load) and sub.id in defined \
                    and sub.id not in local:
                theirs = section_of(defined[sub.id])
                if theirs > own:
                    found.append(f"{owner} uses {sub.id} ({heads[own][1]} -> {heads[theirs][1]})")
    return sorted(set(found))


def test_sections_follow_the_call_order():
    titles = [title for _, title in sections(CORE.read_text().splitlines())]
    expected = ["Helpers", "The pool stream", "The draw and its weights", "Costs and the budget solver", "The policy",
                "The trainer: `mclearn`", "Diagnostics"]
    assert len(titles) == len(expected), titles
    assert [title.startswith(start) for title, start in zip(titles, expected)] == [True] * len(expected), titles


def test_paper_sections_follow_the_call_order():
    titles = [title for _, title in sections(PAPER.read_text().splitlines())]
    expected = ["The published draw and its weights", "The published model", "The published rules",
                "The trainer: `mclearn-paper`"]
    assert len(titles) == len(expected), titles
    assert [title.startswith(start) for title, start in zip(titles, expected)] == [True] * len(expected), titles


@pytest.mark.parametrize("module", [CORE, PAPER], ids=lambda path: path.name)
def test_no_function_uses_a_later_section(module):
    assert later_section_uses(module.read_text()) == []


def _move_before(source: str, name: str, anchor: str) -> str:
    """Return `source` with the top-level def `name` moved to just before the def `anchor`."""
    tree = ast.parse(source)
    lines = source.splitlines(keepends=True)
    node = next(n for n in tree.body if getattr(n, "name", None) == name)
    block = lines[node.lineno - 1:node.end_lineno]
    rest = lines[:node.lineno - 1] + lines[node.end_lineno:]
    at = next(i for i, line in enumerate(rest) if re.match(rf"(def|class) {anchor}\b", line))
    return "".join(rest[:at] + block + ["\n\n"] + rest[at:])


@pytest.mark.parametrize("module, name, anchor, use", [
    (CORE, "MCLearn", "CandidateStream", "MCLearn.__init__ uses PolicyLearner"),  # the trainer into the pool stream
    (CORE, "time_update_costs", "encoder_parts", "time_update_costs uses StepCosts"),  # a cost helper among the model helpers
    (CORE, "plot_confusion_matrix", "make_batch", "plot_confusion_matrix uses figure_out"),  # a plot among the batch helpers
    (PAPER, "MCLearnPaper", "inclusion_probs", "MCLearnPaper.__init__ uses FifoReplay"),  # the trainer before its helpers
    (PAPER, "MeanPooledClassifier", "draw_kept", "MeanPooledClassifier.forward uses apply_head"),  # the model among the draw's
])
def test_a_function_moved_back_is_caught(module, name, anchor, use):
    """The check can fail: move one function into an earlier section and it names the use."""
    moved = _move_before(module.read_text(), name, anchor)
    assert any(line.startswith(use) for line in later_section_uses(moved)), later_section_uses(moved)[:5]
