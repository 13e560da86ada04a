"""The package list in pyproject.toml matches the folders that are packages, and layers stay in their lane."""

import ast
import sys
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ROOT = Path(__file__).resolve().parents[1]


def _pyproject():
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_package_list_matches_folders():
    config = _pyproject()["tool"]["setuptools"]
    declared = set(config["packages"])
    layers = [p.parent for p in ROOT.glob("*/__init__.py") if p.parent.name != "tests"]
    folders = {"edgec." + ".".join(init.parent.relative_to(ROOT).parts)
               for layer in layers for init in layer.rglob("__init__.py")}
    assert declared == folders
    assert {k: v for k, v in config["package-dir"].items()} == {f"edgec.{f.name}": f.name for f in layers}


def _imports(folder: str) -> set[str]:
    names = set()
    for path in (ROOT / folder).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module if node.module.startswith("edgec") else node.module.split(".")[0])
    return names


def test_runtime_imports_only_numpy_and_onnxruntime():
    stdlib = set(sys.stdlib_module_names)
    third_party = {n for n in _imports("runtime") if n not in stdlib and not n.startswith("edgec.runtime")}
    assert third_party <= {"numpy", "onnxruntime", "__future__"}


def test_targets_import_only_the_standard_library():
    stdlib = set(sys.stdlib_module_names) | {"__future__", "tomli"}
    assert {n for n in _imports("targets") if not n.startswith("edgec.targets")} <= stdlib


# the numpy-only runtime modules whose types and math passes share with the device side: the zeroth-order
# tuner's settings, slots and group layout (recovery builds them, the tuner runs them, here or on a board),
# and the fidelity scores and relative L2 (one definition each)
SHARED_WITH_RUNTIME = {"edgec.runtime.zo.tuner", "edgec.runtime.fidelity"}


def test_passes_do_not_reach_into_the_driver_or_runtime():
    assert not {n for n in _imports("passes") if n.startswith("edgec.compiler")}
    assert {n for n in _imports("passes") if n.startswith("edgec.runtime")} <= SHARED_WITH_RUNTIME


def test_a_pass_never_imports_another_pass():
    """What two passes share lives in passes/mlp, attention, training, recovery, …, never in a pass (ruff TID251
    says so at lint time; this says it in `make test`)."""
    from edgec.passes import REGISTRY

    pass_modules = {f"edgec.passes.{name}" for name in REGISTRY}
    for path in (ROOT / "passes").rglob("*.py"):
        if path.name == "__init__.py" and path.parent.name == "passes":
            continue           # the registry
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
                imported.update(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                imported.update(a.name for a in node.names)
        assert not imported & pass_modules, path


def test_no_bare_layer_imports():
    for folder in ("compiler", "passes", "runtime", "targets", "samples"):
        assert not _imports(folder) & {"compiler", "passes", "runtime", "targets"}, folder


def test_the_lint_bans_every_passs_module_from_the_other_passes():
    import tomllib

    from edgec.passes import REGISTRY

    banned = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]["flake8-tidy-imports"]["banned-api"]
    assert {f"edgec.passes.{name}" for name in REGISTRY} <= set(banned)
