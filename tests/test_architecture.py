"""The architecture contract: layers and no import cycles (import-linter), module size, function-local
imports only for heavy or optional dependencies (each with its reason), the task type known in one place."""

from __future__ import annotations

import ast
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "xdistill"
SOURCES = sorted(PACKAGE.rglob("*.py"))

#: third-party modules that may be imported inside a function (each such import says why: "deferred: ...")
DEFERRABLE = {"sklearn", "seqeval", "matplotlib"}
MAX_LINES = 500


def _lint_imports(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent)) or shutil.which("lint-imports")
    if exe is None:
        pytest.fail("lint-imports is not installed (pip install -e '.[dev]')")
    return subprocess.run([exe, *args], cwd=ROOT, capture_output=True, text=True)


def test_import_contracts_hold():
    p = _lint_imports()
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-2000:]
    assert "3 kept, 0 broken" in p.stdout


def test_the_layers_contract_can_fail(tmp_path):
    """The same layers in the wrong order are reported broken: the contract checks something."""
    cfg = (ROOT / "pyproject.toml").read_text()
    block = cfg[cfg.index("[tool.importlinter]"):]
    reversed_layers = re.sub(r'layers = \[(.*?)\]', lambda m: "layers = [" + ",".join(reversed(
        [x for x in m.group(1).split(",") if x.strip()])) + "]", block, count=1, flags=re.S)
    (tmp_path / "contract.toml").write_text(reversed_layers)
    p = _lint_imports("--config", str(tmp_path / "contract.toml"))
    assert p.returncode != 0 and "Layers from data up to the command line BROKEN" in p.stdout


@pytest.mark.parametrize("path", SOURCES, ids=[str(p.relative_to(ROOT)) for p in SOURCES])
def test_no_module_over_500_lines(path):
    n = len(path.read_text(encoding="utf-8").splitlines())
    assert n <= MAX_LINES, f"{path.relative_to(ROOT)} has {n} lines"


def _function_local_imports(path: Path):
    lines = path.read_text(encoding="utf-8").splitlines()
    tree = ast.parse("\n".join(lines))
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            if isinstance(node, ast.Import):
                yield node, node.names[0].name, lines
            elif isinstance(node, ast.ImportFrom):
                yield node, ("." * node.level) + (node.module or ""), lines


def test_function_local_imports_are_heavy_or_optional_and_say_why():
    bad = []
    for path in SOURCES:
        for node, module, lines in _function_local_imports(path):
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            context = " ".join(lines[max(0, node.lineno - 3): node.lineno])
            lazy_public_api = path == PACKAGE / "__init__.py" and module == ".serving.inference"
            if module.split(".")[0] not in DEFERRABLE and not lazy_public_api:
                bad.append(f"{where}: {module} (not a heavy or optional dependency)")
            elif "deferred" not in context:
                bad.append(f"{where}: {module} without a 'deferred: reason' comment")
    assert not bad, "\n".join(bad)


def test_task_type_is_known_in_the_adapters_only():
    """No module outside xdistill/adapters names a task type or branches on one."""
    pattern = re.compile(r'"(token|sequence)-classification"|task_type\s*==|\.level\s*==|\bhead\s*==')
    hits = [f"{p.relative_to(ROOT)}:{i}" for p in SOURCES if "adapters" not in p.parts
            for i, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1) if pattern.search(line)]
    assert not hits, hits


def test_public_load_model(tmp_path, tok):
    import tiny_models as tm

    import xdistill

    d = tm.make_student_dir(tmp_path / "student", tok, constant_label="B-PER")
    m = xdistill.load_model(d)
    assert m.kind == "student" and m.predict(["Anna"])[0]["tags"] == ["B-PER"]
