"""The design rule of ARCHITECTURE.md, enforced: the core never imports engines, trackers, bundles or the edge."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "robustseg"
CORE = (
    "attacks",
    "certification",
    "conditions",
    "data",
    "defenses",
    "evaluation",
    "sensitivity",
    "corruptions",
    "labels.py",
    "checkpoints.py",
    "errors.py",
    "progress.py",
    "seeds.py",
)
FORBIDDEN = (
    "ignite",
    "mlflow",
    "monai.bundle",
    "monai.engines",
    "monai.handlers",
    "robustseg.workflows",
    "robustseg.handlers",
    "robustseg.tracking",
    "robustseg.cli",
    "robustseg.contract",
)


def core_files() -> list[Path]:
    files: list[Path] = []
    for name in CORE:
        path = SRC / name
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.is_file() else []
    return files


def imported_modules(path: Path) -> list[tuple[int, str]]:
    """Every module an import statement of ``path`` names (at any depth, inside functions too)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
            found += [(node.lineno, f"{node.module}.{alias.name}") for alias in node.names]
    return found


def violations(path: Path) -> list[str]:
    """One line per import statement of ``path`` that names a forbidden module."""
    out: dict[int, str] = {}
    for line, module in imported_modules(path):
        if line not in out and any(module == bad or module.startswith(bad + ".") for bad in FORBIDDEN):
            out[line] = f"{path}:{line} imports {module}"
    return list(out.values())


def test_the_core_imports_nothing_from_the_edge() -> None:
    assert len(core_files()) > 20
    problems = [v for path in core_files() for v in violations(path)]
    assert not problems, "\n".join(problems)


def test_the_check_catches_a_forbidden_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from robustseg.tracking import recorded_run\n    import ignite.engine\n")
    found = [m for _, m in imported_modules(bad)]
    assert "robustseg.tracking" in found and "ignite.engine" in found
    assert [v.split(" imports ")[1] for v in violations(bad)] == ["robustseg.tracking", "ignite.engine"]


@pytest.mark.parametrize(
    "module", ["robustseg.attacks", "robustseg.evaluation.dice", "robustseg.evaluation.selfchecks"]
)
def test_importing_the_attacks_loads_neither_matplotlib_nor_mlflow(module: str) -> None:
    code = (
        f"import sys, {module}; "
        "bad = [m for m in ('matplotlib', 'mlflow', 'ignite', 'monai.bundle') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
