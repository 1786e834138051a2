"""The modules the first page and the file format need import without torch: Home draws from
disk while the server is still importing torch (facecomp.app.first_page), and a torch import
slipped into one of them would hold that page up by seconds."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TORCH_FREE = [
    "facecomp.spec",
    "facecomp.hardware",
    "facecomp.result",
    "facecomp.weight_files",
    "facecomp.app.frame",
    "facecomp.app.first_page",
    "facecomp.codec.format",
    "facecomp.measure.results_doc",
]


@pytest.mark.parametrize("module", TORCH_FREE)
def test_module_imports_without_torch(module: str) -> None:
    code = f"import sys, {module}; assert 'torch' not in sys.modules, 'imports torch'"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def test_every_page_imports_what_exists() -> None:
    """The quick tier runs no AppTest: this catches a page whose facecomp import a rename broke."""
    import ast
    import importlib
    import importlib.util

    for page in [ROOT / "app.py", ROOT / "home.py", *sorted((ROOT / "pages").glob("*.py"))]:
        for node in ast.walk(ast.parse(page.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("facecomp"):
                module = importlib.import_module(node.module)
                for alias in node.names:
                    found = hasattr(module, alias.name) or importlib.util.find_spec(f"{node.module}.{alias.name}")
                    assert found, f"{page.name}: from {node.module} import {alias.name}"
