"""The layout of the code: mclearn_core.py is MC-Learn alone and imports no study module, nor does
mclearn_paper.py (`mclearn-paper` beside it, which imports mclearn_core); the study package mcstudy/
imports one way, each module only modules of an earlier layer (mcstudy.LAYERS), and a file of
mcstudy/methods/ only earlier layers and its sibling files, without a cycle."""
import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CORE = ROOT / "mclearn_core.py"
PAPER = ROOT / "mclearn_paper.py"
PACKAGE = ROOT / "mcstudy"
LAYERS = ("config", "data", "model", "engine", "methods", "train", "runs", "budget", "tables",
          "equal_time", "ablation", "cli")


def study_imports(path: Path, root: Path = ROOT) -> set[str]:
    """Return the mcstudy modules (dotted, below mcstudy: "engine", "methods.uniform") that the file
    at `path` (below `root`) imports anywhere in it, relative imports resolved against its package."""
    package = path.relative_to(root).parts[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "mcstudy"}
        elif isinstance(node, ast.ImportFrom):
            base = (".".join(package[:len(package) - node.level + 1]) + ("." + node.module if node.module else "")
                    if node.level else node.module or "")
            if base.split(".")[0] != "mcstudy":
                continue
            if base == "mcstudy" or (node.level and not node.module):  # from . import x: x is a module
                found |= {f"{base}.{a.name}" for a in node.names}
            else:
                found.add(base)
    return {name.removeprefix("mcstudy").lstrip(".") for name in found} - {""}


def layer_of(module: str) -> int:
    """Return the index in LAYERS of a module below mcstudy ("methods.uniform" is in "methods")."""
    head = module.split(".")[0]
    assert head in LAYERS, f"mcstudy.{module} is in no layer of mcstudy.LAYERS: add it there and here"
    return LAYERS.index(head)


def test_the_package_names_the_same_layers():
    import mcstudy

    assert mcstudy.LAYERS == LAYERS


def test_every_study_module_imports_only_earlier_layers_without_a_cycle():
    files = sorted(p for p in PACKAGE.rglob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    edges = {}
    for path in files:
        module = ".".join(path.relative_to(PACKAGE).with_suffix("").parts)
        edges[module] = study_imports(path) - {module}
        for used in edges[module]:
            same_package = used.split(".")[0] == module.split(".")[0] == "methods"
            assert layer_of(used) < layer_of(module) or same_package, \
                f"mcstudy.{module} imports mcstudy.{used}, a later layer: move the name it needs down"
    done, visiting = set(), []

    def visit(module):
        assert module not in visiting, f"import cycle: {' -> '.join(visiting + [module])}"
        if module in done or module not in edges:
            return
        visiting.append(module)
        for used in edges[module]:
            visit(used)
        visiting.pop()
        done.add(module)

    for module in edges:
        visit(module)


def test_the_layout_check_sees_a_backward_import(tmp_path):
    """A deliberate breakage: a config module importing the command line fails the layer rule."""
    (tmp_path / "mcstudy" / "methods").mkdir(parents=True)
    (tmp_path / "mcstudy" / "config.py").write_text("from mcstudy.cli import main\nfrom . import data\n")
    (tmp_path / "mcstudy" / "methods" / "vcas.py").write_text("from ..engine import Method\nfrom .scored import x\n")
    assert study_imports(tmp_path / "mcstudy" / "config.py", tmp_path) == {"cli", "data"}
    assert study_imports(tmp_path / "mcstudy" / "methods" / "vcas.py", tmp_path) == {"engine", "methods.scored"}
    assert layer_of("cli") > layer_of("config")


def top_level_imports(path: Path) -> list[str]:
    """Return the modules the file at `path` imports at its top level ("from a.b import c": "a.b")."""
    top = [n for n in ast.parse(path.read_text()).body if isinstance(n, (ast.Import, ast.ImportFrom))]
    return [a.name for n in top if isinstance(n, ast.Import) for a in n.names] + \
        [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]


def test_core_imports_no_study_module_at_import_time():
    names = top_level_imports(CORE)
    assert not [n for n in names if n.split(".")[0] in ("mcstudy", "make_readme", "run_notebooks", "mclearn_paper")]


def test_paper_imports_only_torch_numpy_the_standard_library_and_core():
    """mclearn_paper.py imports torch, numpy, the standard library and mclearn_core at its top
    level, and names no study module anywhere."""
    import sys

    outside = {n for n in top_level_imports(PAPER) if n.split(".")[0] not in sys.stdlib_module_names}
    assert outside <= {"numpy", "torch", "torch.nn", "torch.nn.functional", "mclearn_core"}, outside
    assert "mcstudy" not in PAPER.read_text()


def test_core_mentions_no_study_module():
    """mclearn_core.py names no study module anywhere (no import, no forward of study names, no
    command that starts the study), and a study name is not an attribute of it."""
    import mclearn_core

    assert "mcstudy" not in CORE.read_text()
    assert not hasattr(mclearn_core, "run_sweep") and not hasattr(mclearn_core, "__getattr__")


def test_core_is_under_2000_lines():
    assert len(CORE.read_text().splitlines()) < 2000
