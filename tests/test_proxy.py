"""deploy/haproxy.cfg in front of two real replicas: every session stays on one (scripts/load_test.py).

The load test's `--replicas 2` starts two `streamlit run app.py` on loopback and HAProxy with the
deployed configuration (`proxy_config` makes it local), drives them with its light clients and
reads the X-FaceComp-Replica header of every answer. Needs Debian's `haproxy` (.ci/run installs it).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "deploy" / "haproxy.cfg"


def missing(what: str) -> None:
    """CI must have it (.ci/run installs it); elsewhere the test is skipped."""
    if os.environ.get("CI"):
        pytest.fail(f"{what} is missing on CI")
    pytest.skip(f"{what} is not installed")


def load_test() -> ModuleType:
    if importlib.util.find_spec("websocket") is None:
        missing("websocket-client (the load test's light clients)")
    sys.path.insert(0, str(ROOT / "scripts"))
    try:
        import load_test as module
    finally:
        sys.path.remove(str(ROOT / "scripts"))
    return module


def test_proxy_config_serves_the_given_replicas_on_loopback(tmp_path: Path) -> None:
    ports = [18501, 18502, 18503]
    text = load_test().proxy_config(TEMPLATE.read_text(), 18080, ports)
    lines = [line.strip() for line in text.splitlines()]
    assert [line for line in lines if line.startswith("bind ")] == ["bind 127.0.0.1:18080"]
    assert [line for line in lines if line.split()[:1] == ["server"]] == [
        f"server app{k} 127.0.0.1:{port} check" for k, port in enumerate(ports, 1)
    ]
    assert "server-template" not in text and "resolvers" not in text
    assert "cookie FACECOMP_REPLICA insert indirect nocache httponly dynamic" in lines
    cfg = tmp_path / "haproxy.cfg"
    cfg.write_text(text)
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        missing("haproxy")
    check = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True, timeout=60)
    assert check.returncode == 0, check.stdout + check.stderr


@pytest.mark.slow
def test_sessions_stay_on_one_replica_behind_haproxy(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    if shutil.which("haproxy") is None:
        missing("haproxy")
    module, out = load_test(), tmp_path / "load.json"
    argv = ["--replicas", "2", "--clients", "6", "--browsers", "0", "--slider-moves", "2", "--baseline-moves", "2"]
    argv += ["--soak-reruns", "0", "--max-seconds", "400", "--json", str(out)]
    status = module.main(argv)
    printed = capsys.readouterr().out
    result = json.loads(out.read_text())
    assert status == 0, result.get("stopped_early") or printed[-3000:]
    sessions = [s for key in ("baseline", "load_light") for s in result[key]["sessions"]]
    assert len(sessions) == 7
    for s in sessions:
        assert s["error"] is None and all(step["error"] is None for step in s["steps"]), s["name"]
        assert len(s["replicas"]) == 1, (s["name"], s["replicas"])
    assert {s["replicas"][0] for s in sessions} == {"app1", "app2"}
    uploads = [step for s in sessions for step in s["steps"] if step["kind"].endswith("_upload")]
    assert len(uploads) == 7 and all(step["fetched"] >= 1 for step in uploads)
    assert result["server_log"]["tracebacks"] == 0
    assert "Sticky sessions: 7 of 7 on one replica" in printed
    with capsys.disabled():
        print("\n" + next(line for line in printed.splitlines() if line.startswith("Sticky sessions")))
