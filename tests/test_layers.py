"""The package's layers (pyproject.toml's import-linter contracts) hold, and no module imports another's private name."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "streamgd"


def test_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(lint), "--no-cache"], cwd=PACKAGE.parent, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert ", 0 broken." in result.stdout.split("Contracts: ")[-1]


def test_no_module_imports_a_private_name_of_another():
    offenders = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom):
                names = [alias.name for alias in node.names]
                module = node.module or ""
                private = [n for n in names if n.startswith("_") and not n.startswith("__")]
                if private or any(part.startswith("_") and not part.startswith("__") for part in module.split(".")):
                    offenders.append(f"{path.relative_to(PACKAGE.parent)}:{node.lineno}: from {'.' * node.level}{module} import "
                                     + ", ".join(names))
    assert offenders == []
