"""The Dockerfile builds the environment requirements.txt describes and serves the app with a health check.

Docker itself is not run here (no daemon on the test machines); these checks read the
files a build would use, and run the build's one step of our own (Home's example).
"""

from __future__ import annotations

import ast
import re
import shlex
import subprocess
import sys
from importlib.metadata import distributions, packages_distributions
from pathlib import Path

import pytest

from facecomp.app import first_page
from facecomp.weight_files import SHIPPED_WEIGHTS_DIR

ROOT = Path(__file__).resolve().parent.parent
DOCKERFILE = (ROOT / "Dockerfile").read_text()


def instructions(name: str) -> list[str]:
    """Arguments of every Dockerfile instruction `name`, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE)
    return [line.split(None, 1)[1] for line in text.splitlines() if line.split(None, 1)[:1] == [name]]


def requirement_names() -> set[str]:
    names = set()
    for line in (ROOT / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            names.add(re.split(r"[<>=!~\[ ;]", line, maxsplit=1)[0].lower().replace("_", "-"))
    return names


def third_party_imports() -> set[str]:
    """Top-level modules imported by the app and the package, other than our own and the stdlib."""
    files = [ROOT / "app.py", ROOT / "home.py", *(ROOT / "pages").glob("*.py"), *(ROOT / "facecomp").glob("*.py")]
    modules = set()
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and m != "facecomp"}


def test_image_installs_exactly_requirements_txt() -> None:
    base = instructions("FROM")
    assert len(base) == 1 and re.fullmatch(rf"python:{sys.version_info.major}\.{sys.version_info.minor}-slim", base[0])
    pip_runs = [run for run in instructions("RUN") if "pip" in run]
    assert pip_runs == ["pip install -r requirements.txt"]
    assert any(copy.split() == ["requirements.txt", "./"] for copy in instructions("COPY"))


def providers(module: str) -> set[str]:
    """Installed distributions that provide a top-level module (top_level.txt, else their file lists)."""
    names = set(packages_distributions().get(module, []))
    if not names:  # some wheels (dlib-bin) list only their extension module in top_level.txt
        names = {d.metadata["Name"] for d in distributions() if f"{module}/__init__.py" in map(str, d.files or [])}
    return {name.lower().replace("_", "-") for name in names}


@pytest.mark.slow
def test_requirements_cover_every_import_of_the_app() -> None:
    wanted = requirement_names()
    missing = {module: providers(module) for module in third_party_imports() if not providers(module) & wanted}
    assert not missing, f"imported but not in requirements.txt: {missing}"


def test_image_carries_the_app_and_weights_and_checks_health() -> None:
    copied = {src.rstrip("/") for copy in instructions("COPY") for src in copy.split()[:-1]}
    assert {"app.py", "home.py", "facecomp", "pages", "weights", ".streamlit"} <= copied
    ignored = {line.strip().rstrip("/") for line in (ROOT / ".dockerignore").read_text().splitlines()}
    assert not copied & ignored
    (port,) = instructions("EXPOSE")
    (health,) = instructions("HEALTHCHECK")
    assert f"127.0.0.1:{port}/_stcore/health" in health
    (cmd,) = instructions("CMD")
    assert "streamlit" in cmd and "app.py" in cmd and f"--server.port={port}" in cmd
    assert "--server.address=0.0.0.0" in cmd  # reachable through the published port


@pytest.mark.slow
def test_image_keeps_homes_example(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The build computes Home's example as the app's user, with the shipped weights, so a new
    container's first page draws from it (facecomp.app.first_page)."""
    (run,) = [run for run in instructions("RUN") if "warm_up" in run]
    assert DOCKERFILE.index(run) > DOCKERFILE.index("\nUSER ")  # kept in the app user's cache
    program, *args = shlex.split(run)
    assert program == "python"
    monkeypatch.delenv("FACECOMP_WEIGHTS_DIR", raising=False)
    monkeypatch.setenv("FACECOMP_CACHE_DIR", str(tmp_path))
    out = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    kept = first_page.read(SHIPPED_WEIGHTS_DIR)
    assert kept is not None and [r.name for r in kept.results] == ["Original", "AE", "VAE"]


def test_compose_sends_the_proxy_to_the_apps_port() -> None:
    """compose.yaml's replicas are the Dockerfile's app, and HAProxy (deploy/) listens where compose
    publishes it and sends to the port the app exposes, under the service name compose gives it."""
    compose = (ROOT / "compose.yaml").read_text()
    proxy = (ROOT / "deploy" / "haproxy.cfg").read_text()
    proxy_image = (ROOT / "deploy" / "proxy.Dockerfile").read_text()
    (app_port,) = instructions("EXPOSE")
    assert re.search(rf"^\s+server-template app \S+ app:{app_port} ", proxy, re.M)
    assert re.search(rf"^  app:\n(    .*\n|\n)*?    expose:\n      - \"{app_port}\"", compose, re.M)
    (listen,) = re.findall(r"^\s+bind :(\d+)$", proxy, re.M)
    assert re.search(rf":{listen}\"$", compose, re.M)  # the published port maps to where HAProxy listens
    assert "COPY haproxy.cfg" in proxy_image and f"EXPOSE {listen}" in proxy_image
