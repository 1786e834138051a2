"""Load and memory test of the real app server: many users at once, and the memory they leave behind.

    python scripts/load_test.py [--clients 20] [--browsers 2] [--slider-moves 10] [--soak-reruns 500]
                                [--large-uploads 0] [--hd-uploads 0] [--replicas 1] [--think 0] [--ramp 0]
                                [--json OUT] [--weights DIR] [--max-seconds 900]

Run by hand (tests/test_proxy.py runs a short one). It starts `streamlit run app.py` on a free loopback
port and stops it at the end (also on errors or Ctrl-C). --replicas N >= 2 starts N of them, every one
with the same cookie secret, behind HAProxy (deploy/haproxy.cfg made local by `proxy_config`, sticky
by a cookie): the clients then talk to the proxy, and every session must stay on one replica (the
X-FaceComp-Replica header of each answer names it). Phases, all bounded by --max-seconds:

1. One user: one light client alone does a full session (Compare upload, then --baseline-moves slider
   moves on the Latent explorer). It also loads every model, so memory is measured after it.
2. Load: --clients light clients and --browsers headless Chromium sessions at the same time, each doing
   one session (upload a photo on Compare, then --slider-moves slider moves on the explorer). By
   default every session starts at once and no client pauses (a burst); --ramp spreads the starts
   and --think gives light clients a person's pauses (before the upload, after it, between moves).
   Chromium is launched before the phase starts (a visitor's browser runs on their own machine),
   and the browsers' starts are spread among the light clients'.
3. Soak: --soak-clients light clients upload --soak-reruns new photos in all (every one a different
   variant), then the server's resident memory is read again.
4. Large photos: one light client uploads --large-uploads photos of 39 megapixels (each a new one),
   then memory is read again: what the app keeps of a photo must not grow with its size.
5. HD photos: one light client uploads --hd-uploads 1920x1080 photos (each a new one); the server's
   CPU seconds per upload are reported.

A light client speaks Streamlit's own protocol, as the browser's frontend does, without rendering:
  * GET the page, /_stcore/health (sets the _streamlit_xsrf cookie) and /_stcore/host-config, then open
    the websocket /_stcore/stream with subprotocols ["streamlit", <xsrf cookie>].
  * Send BackMsg.rerun_script (a ClientState: page name or hash, all widget states it has set, the
    fragment id of the widget that changed, the hashes of the ForwardMsgs it caches) and read
    ForwardMsgs until script_finished; ref_hash messages are resolved from its own message cache.
  * Fetch every new media URL (st.image) over HTTP, once per session, as a browser's image cache does.
  * Upload as the file_uploader does: BackMsg.file_urls_request -> ForwardMsg.file_urls_response,
    PUT the file (multipart, X-Xsrftoken header), DELETE the file it replaces, then rerun with the
    widget's FileUploaderState naming the file.

Step times: server_s = from sending the rerun BackMsg to script_finished (the server's time on
loopback); total_s = from the user's action (connect, upload, slider release) to the last image fetched.
Browsers are timed the same way: the websocket frames they send and receive are decoded here.

Memory: VmRSS of the server process and its children (with replicas: summed over them, and the
largest replica's beside it), read from /proc when the server is healthy, after the one-user session
(every model loaded), after each later phase, and every 2 s.
Beside each reading, what Streamlit counts in its caches, uploads, media and session state
(/_stcore/metrics), to tell the caches' bounded growth from the rest.
Disconnected sessions stay in the server for a reconnect (server.disconnectedSessionTTL, 120 s), so
the readings after a phase include its sessions' state and uploads.

Exit status 0 only when every session was served without an error (with replicas: and on one
replica). Browser sessions need Debian's
chromium at /usr/bin/chromium and `pip install playwright` (never `playwright install`).
Weights: --weights, else $FACECOMP_WEIGHTS_DIR, else the shipped weights/.
"""

from __future__ import annotations

import argparse
import collections
import functools
import io
import itertools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import requests
import websocket
from PIL import Image, ImageEnhance
from streamlit.proto.Alert_pb2 import Alert
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ClientState_pb2 import ClientState
from streamlit.proto.Common_pb2 import FileURLs, FileURLsResponse
from streamlit.proto.Element_pb2 import Element
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from streamlit.proto.WidgetStates_pb2 import WidgetState

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script from anywhere

from facecomp.faces import detect_faces, load_image  # noqa: E402

# tests/test_browser.py skips itself at import (pytest.skip) when Chromium or Playwright is missing.
# Its server helpers need neither, so import it with those skips disarmed; the browsers check below.
with (
    mock.patch.object(pytest, "skip", lambda *args, **kwargs: None),
    mock.patch.object(pytest, "importorskip", lambda *args, **kwargs: None),
):
    from tests.test_browser import (  # noqa: E402
        CHROMIUM,
        CHROMIUM_ARGS,
        drag_until_redrawn,
        free_port,
        start_server,
        stop_server,
        wait_healthy,
    )

COMPARE_PATH = "Compare"  # url_pathname of pages/1_Compare.py
EXPLORER_PATH = "Latent_explorer"  # url_pathname of pages/2_Latent_explorer.py
SOURCE_KEY = "compare_source"  # the radio: built-in / upload / camera
UPLOAD_KEY = "compare_upload"  # the file_uploader's key, shown once the radio is on "Upload"
SLIDER_PREFIX = "explore_"  # the explorer's editor sliders: explore_<direction name>
# Browsers wait for at least this many drawn images, as tests/test_browser.py does.
COMPARE_IMAGES = 7  # the photo, then Original, AE, VAE, JPEG, WebP, AVIF
EXPLORER_IMAGES = 6  # start and edited face, the morph's three, the sample grids
XSRF_COOKIE = "_streamlit_xsrf"
REPLICA_HEADER = "X-FaceComp-Replica"  # deploy/haproxy.cfg: the replica that answered
HAPROXY_TEMPLATE = ROOT / "deploy" / "haproxy.cfg"
STARTED = time.monotonic()  # the clock of Step.at
MEMORY_SETTLE_S = 3.0  # seconds between a phase's end and its memory reading
# The result's session groups after the one-user baseline, with their titles in the summary.
PHASE_GROUPS = (
    ("load_light", "Load, light clients"),
    ("load_browsers", "Load, browsers"),
    ("soak", "Soak"),
    ("large", "Large photos"),
    ("hd", "HD photos"),
)
EARLY = ForwardMsg.ScriptFinishedStatus.Value("FINISHED_EARLY_FOR_RERUN")
FRAGMENT_DONE = ForwardMsg.ScriptFinishedStatus.Value("FINISHED_FRAGMENT_RUN_SUCCESSFULLY")
ALERT_ERROR = Alert.Format.Value("ERROR")  # st.error: how the app reports a photo or weights it cannot use


# ---- configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Config:
    weights: Path
    clients: int = 20
    browsers: int = 2
    slider_moves: int = 10
    baseline_moves: int = 20
    soak_reruns: int = 500
    soak_clients: int = 4
    large_uploads: int = 0
    hd_uploads: int = 0
    replicas: int = 1  # app servers; two or more run behind HAProxy
    max_seconds: float = 900.0
    step_timeout: float = 180.0  # one rerun on a loaded 2-core machine (the first loads the models)
    think: float = 0.0  # a light client's mean pause between steps (s); 0: as fast as it can
    ramp: float = 0.0  # load-phase sessions start spread over this many seconds; 0: all at once
    json_out: Path | None = None


def parse_args(argv: list[str] | None = None) -> Config:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--clients", type=int, default=20, help="light (protocol) clients in the load phase")
    p.add_argument("--browsers", type=int, default=2, help="headless Chromium sessions in the load phase")
    p.add_argument("--slider-moves", type=int, default=10, help="slider moves per load-phase session")
    p.add_argument("--baseline-moves", type=int, default=20, help="slider moves of the one-user baseline")
    p.add_argument("--soak-reruns", type=int, default=500, help="photo uploads in the soak phase (0: no soak)")
    p.add_argument("--soak-clients", type=int, default=4, help="light clients sharing the soak uploads")
    p.add_argument(
        "--large-uploads", type=int, default=0, help="39-megapixel photos one client uploads at the end (0: none)"
    )
    p.add_argument("--hd-uploads", type=int, default=0, help="1920x1080 photos one client uploads at the end (0: none)")
    p.add_argument("--replicas", type=int, default=1, help="app servers; 2 or more: behind HAProxy, sticky sessions")
    p.add_argument("--max-seconds", type=float, default=900.0, help="global deadline for the whole test")
    p.add_argument("--step-timeout", type=float, default=180.0, help="seconds one step may take")
    p.add_argument(
        "--think", type=float, default=0.0, help="mean pause of a light client between steps, s (0: none, a burst)"
    )
    p.add_argument("--ramp", type=float, default=0.0, help="load-phase sessions start over this many seconds")
    p.add_argument("--json", type=Path, help="write every number here")
    p.add_argument("--weights", help="weights folder (default: see above)")
    a = p.parse_args(argv)
    weights = Path(a.weights or os.environ.get("FACECOMP_WEIGHTS_DIR") or ROOT / "weights")
    return Config(
        weights=weights.resolve(),
        clients=a.clients,
        browsers=a.browsers,
        slider_moves=a.slider_moves,
        baseline_moves=a.baseline_moves,
        soak_reruns=a.soak_reruns,
        soak_clients=max(1, a.soak_clients),
        large_uploads=a.large_uploads,
        hd_uploads=a.hd_uploads,
        replicas=max(1, a.replicas),
        max_seconds=a.max_seconds,
        step_timeout=a.step_timeout,
        think=a.think,
        ramp=a.ramp,
        json_out=a.json,
    )


class DeadlineExceeded(Exception):
    pass


class ServerDied(Exception):
    pass


class StepError(Exception):
    """A step failed: an exception on the page, a disconnect, a timeout, a missing widget."""


@dataclass(frozen=True)
class Deadline:
    end: float  # time.monotonic() value

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def bound(self, seconds: float) -> float:
        """`seconds`, cut to what is left; raises once nothing is."""
        left = self.left()
        if left <= 0:
            raise DeadlineExceeded("global deadline (--max-seconds) reached")
        return min(seconds, left)


# ---- photos -------------------------------------------------------------------------------------

LARGE_SIZE = (7200, 5400)  # 39 megapixels, just under the app's limit (faces.MAX_PIXELS)
HD_SIZE = (1920, 1080)


@functools.cache
def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())


@functools.cache
def photo_variant(index: int) -> bytes:
    """Variant number `index` of scikit-image's astronaut as JPEG: its own crop, brightness, contrast,
    mirroring and quality, so every index is a photo the server has not seen (no cache hit).

    A variant in which the app's face detector finds no face is drawn again (this measures the
    server, not the detector's recall); `prepare_photos` makes them before a phase is timed."""
    for attempt in itertools.count():
        rng = np.random.default_rng([index, attempt])
        side = int(rng.integers(400, 481))  # the face stays inside every crop of at least 400 pixels
        x0, y0 = (int(v) for v in rng.integers(0, 512 - side + 1, size=2))
        img = astronaut().crop((x0, y0, x0 + side, y0 + side))
        img = ImageEnhance.Brightness(img).enhance(float(rng.uniform(0.8, 1.2)))
        img = ImageEnhance.Contrast(img).enhance(float(rng.uniform(0.85, 1.15)))
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        buf = io.BytesIO()
        img.save(buf, "JPEG", quality=int(rng.integers(80, 96)))
        if detect_faces(load_image(buf.getvalue())):
            return buf.getvalue()
    raise AssertionError("unreachable")


@functools.cache
def large_photo(index: int) -> bytes:
    """A 39-megapixel JPEG, as a camera makes: the astronaut enlarged to the photo's height on a
    plain background, placed and tinted by `index`, so every index is a new photo."""
    width, height = LARGE_SIZE
    canvas = Image.new("RGB", LARGE_SIZE, (40 + 25 * (index % 8), 60, 80))
    canvas.paste(astronaut().resize((height, height), Image.Resampling.BICUBIC), (300 * (index % 7), 0))
    buf = io.BytesIO()
    canvas.save(buf, "JPEG", quality=85)
    return buf.getvalue()


@functools.cache
def hd_photo(index: int) -> bytes:
    """A 1920x1080 JPEG (quality 90), as a phone or a screenshot makes: the astronaut about 900 px
    tall on a plain background, its place and the background's colour drawn from `index`, so every
    index is a new photo. A draw in which the face detector does not find exactly one face (the
    suit's badge can pass for one at this size) is drawn again: the upload measured is the usual one."""
    width, height = HD_SIZE
    for attempt in itertools.count():
        rng = np.random.default_rng([index, attempt])
        side = int(rng.integers(860, 941))
        x0, y0 = int(rng.integers(0, width - side + 1)), int(rng.integers(0, height - side + 1))
        canvas = Image.new("RGB", HD_SIZE, tuple(int(v) for v in rng.integers(0, 256, size=3)))
        canvas.paste(astronaut().resize((side, side), Image.Resampling.BICUBIC), (x0, y0))
        buf = io.BytesIO()
        canvas.save(buf, "JPEG", quality=90)
        if len(detect_faces(load_image(buf.getvalue()))) == 1:
            return buf.getvalue()
    raise AssertionError("unreachable")


def prepare_photos(indices: Iterable[int]) -> None:
    for index in indices:
        photo_variant(index)


# ---- the server: log and memory -----------------------------------------------------------------


class ServerLog:
    """Reads the server's output so its pipe never fills (a full pipe would stall the server)."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.tail: collections.deque[str] = collections.deque(maxlen=200)
        self.tracebacks = 0
        self._thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self._thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for raw in proc.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self.tail.append(line)
            self.tracebacks += line.startswith("Traceback")


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:  # field 4, after the "(name)"
                kids.append(int(entry.name))
    return kids


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """Resident memory of a process and all its descendants, in MiB: VmRSS, or its parts RssAnon
    (the heap: what the program allocated) and RssFile (pages of mapped files, such as torch's
    libraries: shared with other processes and dropped by the kernel when memory is short)."""
    total_kib, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith(f"{field}:"):
                    total_kib += int(line.split()[1])
        except OSError:
            continue
        todo += _children(p)
    return total_kib / 1024


def streamlit_held_mib(base: str) -> float | None:
    """What Streamlit itself reports holding (/_stcore/metrics, cache_memory_bytes: st.cache_data
    entries, uploaded and media files, session state), in MiB; None when it cannot be read."""
    try:
        resp = requests.get(f"{base}/_stcore/metrics", params={"families": "cache_memory_bytes"}, timeout=10)
        resp.raise_for_status()
    except requests.RequestException:
        return None
    lines = [line for line in resp.text.splitlines() if line.startswith("cache_memory_bytes{")]
    return round(sum(float(line.rsplit(" ", 1)[1]) for line in lines) / 2**20, 1)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process and all its descendants, in seconds."""
    ticks, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15)
        todo += _children(p)
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU seconds the whole machine spent busy (every core), from /proc/stat."""
    values = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = values[3] + values[4]  # idle, iowait
    return (sum(values[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def replicas_named(headers: Mapping[str, str]) -> list[str]:
    """The replica an answer's REPLICA_HEADER names, if any (header names may come lower-cased)."""
    return [v for k, v in headers.items() if k.lower() == REPLICA_HEADER.lower()]


class Progress:
    """A count shared by threads: soak uploads done so far."""

    def __init__(self) -> None:
        self.n = 0
        self._lock = threading.Lock()

    def add(self) -> None:
        with self._lock:
            self.n += 1


class MemorySampler:
    """RSS every `period` seconds, tagged with the phase and the soak uploads done, for the trend.
    `rss`: a process id (that process and its children), or a callable giving MiB (e.g. Servers.rss)."""

    def __init__(self, rss: int | Callable[[], float], progress: Progress, period: float = 2.0) -> None:
        self.rss = rss if callable(rss) else functools.partial(rss_mib, rss)
        self.progress, self.period, self.phase = progress, period, "start"
        self.samples: list[tuple[float, str, int, float]] = []  # seconds, phase, soak uploads, MiB
        self._stop = threading.Event()
        self._t0 = time.monotonic()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.period):
            rss = round(self.rss(), 1)
            if rss:  # 0: the server is gone
                self.samples.append((round(time.monotonic() - self._t0, 1), self.phase, self.progress.n, rss))

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


# ---- the servers: one, or replicas behind HAProxy -----------------------------------------------


def proxy_config(template: str, port: int, replica_ports: list[int]) -> str:
    """deploy/haproxy.cfg made for this machine: it listens on 127.0.0.1:`port` (not :8080), its
    backend names one `server app<k>` per replica port on loopback (not Docker's server-template),
    and the `resolvers` section (Docker's DNS) is gone. Everything else, the sticky cookie and the
    X-FaceComp-Replica header included, is the deployed configuration."""
    out: list[str] = []
    binds = templates = 0
    in_resolvers = False
    for line in template.splitlines():
        words = line.split()
        if words and not line[0].isspace():  # a line at the margin: a section starts (or a comment)
            in_resolvers = words[0] == "resolvers"
        if in_resolvers:
            continue
        indent = line[: len(line) - len(line.lstrip())]
        if words[:1] == ["bind"]:
            out.append(f"{indent}bind 127.0.0.1:{port}")
            binds += 1
        elif words[:1] == ["server-template"]:
            out += [f"{indent}server app{k} 127.0.0.1:{p} check" for k, p in enumerate(replica_ports, 1)]
            templates += 1
        else:
            out.append(line)
    if binds != 1 or templates != 1:
        raise ValueError(f"expected one bind and one server-template line, found {binds} and {templates}")
    return "\n".join(out).rstrip() + "\n"


def free_ports(n: int) -> list[int]:
    """`n` different free loopback ports."""
    ports: list[int] = []
    while len(ports) < n:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


class Servers:
    """The app's server: one `streamlit run app.py`, or with `replicas` >= 2 that many behind
    HAProxy, every one with the same cookie secret (as compose.yaml gives them). Measured and
    stopped together: CPU and memory are summed over the replicas (the proxy apart)."""

    def __init__(self, weights: Path, replicas: int) -> None:
        self.weights, self.replicas = weights, replicas
        self.procs: list[subprocess.Popen] = []
        self.logs: list[ServerLog] = []
        self.bases: list[str] = []  # each replica's own URL
        self.proxy: subprocess.Popen | None = None
        self.proxy_log: ServerLog | None = None
        self.base = ""  # where the clients go: the one server, or the proxy
        self._folder: tempfile.TemporaryDirectory | None = None

    def start(self, deadline: Deadline) -> None:
        """Start the replicas, wait until each is healthy, then start the proxy in front of them."""
        haproxy = shutil.which("haproxy")
        if self.replicas >= 2 and haproxy is None:
            raise RuntimeError("--replicas needs HAProxy (apt-get install haproxy)")
        ports = free_ports(self.replicas + (1 if self.replicas >= 2 else 0))  # the last: the proxy's
        env = {"STREAMLIT_SERVER_COOKIE_SECRET": uuid.uuid4().hex} if self.replicas >= 2 else {}
        for port in ports[: self.replicas]:
            with mock.patch.dict(os.environ, env):  # start_server passes its environment on
                proc = start_server(self.weights, port)
            self.procs.append(proc)
            self.logs.append(ServerLog(proc))
            self.bases.append(f"http://127.0.0.1:{port}")
        end = time.monotonic() + min(60.0 + 60.0 * self.replicas, deadline.left())  # one server: 120 s
        for base, proc in zip(self.bases, self.procs):
            wait_healthy(base, proc, max(0.0, end - time.monotonic()))
        if self.replicas == 1:
            self.base = self.bases[0]
            return
        self._folder = tempfile.TemporaryDirectory(prefix="facecomp_proxy_")
        cfg = Path(self._folder.name) / "haproxy.cfg"
        cfg.write_text(proxy_config(HAPROXY_TEMPLATE.read_text(), ports[-1], ports[:-1]))
        self.proxy = subprocess.Popen(
            [haproxy, "-db", "-f", str(cfg)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        self.proxy_log = ServerLog(self.proxy)
        self.base = f"http://127.0.0.1:{ports[-1]}"
        try:
            wait_healthy(self.base, self.proxy, min(30.0, deadline.left()))
        except RuntimeError as err:
            self.proxy_log._thread.join(timeout=2)
            said = " / ".join(list(self.proxy_log.tail)[-5:])
            raise RuntimeError(f"haproxy exited with status {self.proxy.returncode}: {said}") from err

    def stop(self) -> None:
        """The proxy first, then every replica."""
        if self.proxy is not None:
            stop_server(self.proxy)
        for proc in self.procs:
            stop_server(proc)
        if self._folder is not None:
            self._folder.cleanup()

    def rss(self, field: str = "VmRSS") -> float:
        return sum(rss_mib(proc.pid, field) for proc in self.procs)

    def largest_rss(self) -> float:
        return max((rss_mib(proc.pid) for proc in self.procs), default=0.0)

    def cpu(self) -> float:
        return sum(cpu_seconds(proc.pid) for proc in self.procs)

    def proxy_cpu(self) -> float:
        return cpu_seconds(self.proxy.pid) if self.proxy is not None else 0.0

    def held_mib(self) -> float | None:
        """What Streamlit counts in its caches, summed over the replicas (each asked directly)."""
        held = [streamlit_held_mib(base) for base in self.bases]
        return None if None in held else round(sum(held), 1)

    def exited(self) -> dict[str, int]:
        """The processes that are gone, by name, with their exit status."""
        names = ["the server"] if self.replicas == 1 else [f"app{k}" for k in range(1, len(self.procs) + 1)]
        procs = [*zip(names, self.procs), *([("haproxy", self.proxy)] if self.proxy is not None else [])]
        return {name: proc.returncode for name, proc in procs if proc.poll() is not None}

    def log_report(self) -> dict[str, object]:
        tracebacks = sum(log.tracebacks for log in self.logs)
        if self.replicas == 1:
            return {"tracebacks": tracebacks, "tail": list(self.logs[0].tail)[-60:] if self.logs else []}
        report: dict[str, object] = {
            "tracebacks": tracebacks,
            "tail": {f"app{k}": list(log.tail)[-60:] for k, log in enumerate(self.logs, 1)},
        }
        if self.proxy_log is not None:
            report["proxy_tail"] = list(self.proxy_log.tail)[-60:]
        return report


# ---- records ------------------------------------------------------------------------------------


@dataclass
class Step:
    kind: str  # compare_open, compare_radio, compare_upload, explorer_open, slider_move, soak/large/hd_upload
    server_s: float | None = None  # rerun BackMsg sent -> script_finished received
    total_s: float | None = None  # user action -> last media fetched (or image drawn, for browsers)
    images: int = 0  # images on the page after this step (light clients: in this run's deltas)
    fetched: int = 0  # media files downloaded in this step (new URLs only, as a browser's cache)
    error: str | None = None
    at: float | None = None  # when the step began, seconds after the test started: a timeline of the load
    most_ahead: int | None = None  # the longest waiting line the page showed ("N comparisons ahead of yours")


@dataclass
class Session:
    client: str  # "light" or "browser"
    name: str
    photo: int
    steps: list[Step] = field(default_factory=list)
    error: str | None = None  # what ended the session early, if anything
    slider_label: str | None = None
    messages: dict[str, int] = field(default_factory=dict)  # ForwardMsg types received (light clients)
    replicas: list[str] = field(default_factory=list)  # the X-FaceComp-Replica values its answers carried

    @property
    def ok(self) -> bool:
        return self.error is None and all(s.error is None for s in self.steps)


# ---- the light client ---------------------------------------------------------------------------


class MessageCache:
    """The frontend's ForwardMsgCache: keeps cacheable messages by hash, so the server may send only
    a ref_hash for them next time; entries expire after max_cached_message_age script runs."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[bytes, int, str]] = {}  # hash -> (message, run count, fragment id)
        self.runs = 0
        self.hits = 0  # ref_hash messages resolved from the cache

    def hashes(self) -> list[str]:
        return list(self.entries)

    def process(self, raw: bytes) -> ForwardMsg:
        msg = ForwardMsg.FromString(raw)
        if msg.WhichOneof("type") == "ref_hash":
            entry = self.entries.get(msg.ref_hash)
            if entry is None:
                raise StepError(f"ref_hash {msg.ref_hash} names a message this client never cached")
            self.entries[msg.ref_hash] = (entry[0], self.runs, entry[2])
            self.hits += 1
            full = ForwardMsg.FromString(entry[0])
            full.metadata.CopyFrom(msg.metadata)
            return full
        if msg.metadata.cacheable and msg.hash and msg.hash not in self.entries:
            fragment = msg.delta.fragment_id if msg.WhichOneof("type") == "delta" else ""
            self.entries[msg.hash] = (raw, self.runs, fragment)
        elif msg.hash in self.entries:
            raw_old, _, fragment = self.entries[msg.hash]
            self.entries[msg.hash] = (raw_old, self.runs, fragment)
        return msg

    def run_finished(self, max_age: int, fragment_ids: list[str]) -> None:
        self.runs += 1
        for h, (_, seen, fragment) in list(self.entries.items()):
            if fragment_ids and fragment not in fragment_ids:
                continue  # a fragment run only ages that fragment's messages
            if self.runs - seen > max_age:
                del self.entries[h]


@dataclass
class Run:
    """What one script run sent: its elements (with their fragment ids), images and problems."""

    elements: list[tuple[Element, str]] = field(default_factory=list)
    image_urls: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # st.warning / st.info texts: why a page drew less
    status: int | None = None
    fragment_ids: list[str] = field(default_factory=list)
    server_s: float | None = None

    def widget(self, kind: str, key_test: Callable[[str], bool]) -> tuple[Element, str]:
        """The first element of this kind (e.g. "slider") whose user key passes `key_test`.
        Widget ids read "$$ID-<hash>-<user key>" (streamlit.runtime.state.common)."""
        for element, fragment in self.elements:
            if element.WhichOneof("type") == kind:
                widget = getattr(element, kind)
                if key_test(widget.id.split("-", 2)[-1]):
                    return element, fragment
        raise StepError(f"no {kind} widget found in this run")


class LightClient:
    """One browser tab's worth of protocol, without the rendering."""

    def __init__(self, base_url: str, deadline: Deadline, step_timeout: float) -> None:
        self.base, self.deadline, self.step_timeout = base_url, deadline, step_timeout
        self.http = requests.Session()
        self.ws: websocket.WebSocket | None = None
        self.cache = MessageCache()
        self.widgets: dict[str, WidgetState] = {}  # what the frontend's WidgetStateManager holds
        self.pages: dict[str, str] = {}  # url_pathname -> page_script_hash, from the navigation message
        self.page_hash = ""
        self.session_id = ""
        self.query = ""
        self.max_age = 2
        self.fetched: set[str] = set()  # media URLs already loaded (the browser's image cache)
        self.seen: collections.Counter[str] = collections.Counter()  # ForwardMsg types, for the report
        self._file_urls: dict[str, FileURLsResponse] = {}
        self.replicas: set[str] = set()  # which replicas answered (the proxy's header), for stickiness

    # -- connection

    def connect(self, path: str) -> None:
        """What a browser does before the websocket: the page, then the health and host-config pings.
        The health answer sets the XSRF cookie, which goes back as the second websocket subprotocol."""
        for url in (f"/{path}", "/_stcore/health", "/_stcore/host-config"):
            resp = self._http("GET", url)
            if resp.status_code != 200:
                raise StepError(f"GET {url} answered HTTP {resp.status_code}")
        token = self.http.cookies.get(XSRF_COOKIE) or "PLACEHOLDER_AUTH_TOKEN"
        try:
            self.ws = websocket.create_connection(
                "ws" + self.base.removeprefix("http") + "/_stcore/stream",
                timeout=self.deadline.bound(self.step_timeout),
                subprotocols=["streamlit", token],
                origin=self.base,  # same origin as the page: the server rejects foreign origins
                cookie="; ".join(f"{k}={v}" for k, v in self.http.cookies.items()),
            )
        except (OSError, websocket.WebSocketException) as err:
            raise StepError(f"websocket connection failed: {err!r}") from err
        self.note_replica(self.ws.getheaders() or {})  # the handshake's answer

    def note_replica(self, headers: Mapping[str, str]) -> None:
        self.replicas.update(replicas_named(headers))

    def message_counts(self) -> dict[str, int]:
        return {**self.seen, "ref_hash (resolved from the cache)": self.cache.hits}

    def close(self) -> None:
        if self.ws is not None:
            try:
                self.ws.close(timeout=2)
            except (OSError, websocket.WebSocketException):
                pass
        self.http.close()

    def _http(self, method: str, url: str, **kwargs: object) -> requests.Response:
        try:
            resp = self.http.request(method, self.base + url, timeout=self.deadline.bound(60.0), **kwargs)
        except requests.RequestException as err:
            raise StepError(f"{method} {url} failed: {err!r}") from err
        self.note_replica(resp.headers)
        return resp

    def _send(self, msg: BackMsg) -> None:
        try:
            self.ws.send_binary(msg.SerializeToString())
        except (OSError, websocket.WebSocketException) as err:
            raise StepError(f"disconnected while sending: {err!r}") from err

    def _receive(self, until: float) -> ForwardMsg:
        try:
            self.ws.settimeout(max(0.05, min(until - time.monotonic(), self.deadline.bound(self.step_timeout))))
            raw = self.ws.recv()
        except websocket.WebSocketTimeoutException as err:
            if self.deadline.left() <= 0:
                raise DeadlineExceeded("global deadline (--max-seconds) reached") from err
            raise StepError("timeout waiting for the server") from err
        except (OSError, websocket.WebSocketException) as err:
            raise StepError(f"disconnected: {err!r}") from err
        if not isinstance(raw, bytes):
            raise StepError("the server sent a text frame")
        return self.cache.process(raw)

    # -- script runs

    def rerun(self, *, page_name: str = "", page_hash: str | None = None, fragment_id: str = "") -> Run:
        """Send rerun_script as the frontend's sendRerunBackMsg does and wait for script_finished."""
        state = ClientState(
            query_string=self.query,
            page_script_hash=self.page_hash if page_hash is None else page_hash,
            page_name=page_name,  # only for the first run: the page comes from the URL path
            fragment_id=fragment_id,  # set: the server reruns only that @st.fragment
            cached_message_hashes=self.cache.hashes(),
        )
        state.widget_states.widgets.extend(self.widgets.values())
        state.context_info.timezone, state.context_info.locale = "UTC", "en-US"
        state.context_info.url, state.context_info.color_scheme = self.base, "light"
        sent = time.monotonic()
        self._send(BackMsg(rerun_script=state))
        run = self._wait_finished(sent)
        run.server_s = time.monotonic() - sent
        return run

    def _wait_finished(self, sent: float) -> Run:
        until, run = sent + self.step_timeout, Run()
        while True:
            msg = self._receive(until)
            if self._handle(msg, run):
                return run

    def _handle(self, msg: ForwardMsg, run: Run) -> bool:
        """Apply one ForwardMsg; True once the run is over."""
        kind = msg.WhichOneof("type")
        self.seen[kind if kind != "delta" else f"delta.{msg.delta.WhichOneof('type')}"] += 1
        if kind == "new_session":
            self._on_new_session(msg, run)
        elif kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
            self._on_element(msg.delta.new_element, msg.delta.fragment_id, run)
        elif kind == "navigation":
            # Pages (also a pages/ folder's) run under st.navigation: this message, not new_session,
            # names the page that ran and lists every page, as the frontend's AppNavigation reads it.
            self.page_hash = msg.navigation.page_script_hash
            self.pages = {p.url_pathname: p.page_script_hash for p in msg.navigation.app_pages}
        elif kind == "page_info_changed":
            self.query = msg.page_info_changed.query_string
        elif kind == "session_event" and msg.session_event.HasField("script_compilation_exception"):
            run.errors.append("script compilation error: " + msg.session_event.script_compilation_exception.message)
        elif kind == "page_not_found":
            run.errors.append(f"page not found: {msg.page_not_found.page_name}")
        elif kind == "file_urls_response":
            self._file_urls[msg.file_urls_response.response_id] = msg.file_urls_response
        elif kind == "script_finished" and msg.script_finished != EARLY:
            run.status = msg.script_finished
            self.cache.run_finished(self.max_age, run.fragment_ids)
            return True
        # Others need no answer: session_status_changed, page_config_changed, page_profile,
        # logo, heartbeat_ack, git_info_changed, parent_message, auto_rerun, add_block/new_transient deltas.
        return False

    def _on_new_session(self, msg: ForwardMsg, run: Run) -> None:
        ns = msg.new_session
        self.page_hash = ns.page_script_hash  # the main script's hash; a navigation message follows
        self.session_id = ns.initialize.session_id or self.session_id
        self.max_age = ns.config.max_cached_message_age or self.max_age
        run.fragment_ids = list(msg.metadata.run.fragment_ids)

    def _on_element(self, element: Element, fragment_id: str, run: Run) -> None:
        run.elements.append((element, fragment_id))
        kind = element.WhichOneof("type")
        if kind == "imgs":
            run.image_urls += [img.url for img in element.imgs.imgs if img.url]
        elif kind == "exception":
            run.errors.append(f"exception on the page: {element.exception.type}: {element.exception.message}")
        elif kind == "alert" and element.alert.format == ALERT_ERROR:
            run.errors.append(f"st.error on the page: {element.alert.body}")
        elif kind == "alert":
            run.notes.append(element.alert.body)

    def fetch_media(self, run: Run) -> int:
        """GET the run's images not loaded before, as <img> tags would; returns how many."""
        new = [u for u in dict.fromkeys(run.image_urls) if u not in self.fetched]
        for url in new:
            resp = self._http("GET", url if url.startswith("/") else f"/{url}")
            if resp.status_code != 200:
                raise StepError(f"media {url} answered HTTP {resp.status_code}")
            self.fetched.add(url)
        return len(new)

    # -- widgets

    def set_string(self, widget_id: str, value: str) -> None:
        self.widgets[widget_id] = WidgetState(id=widget_id, string_value=value)  # st.radio's value type

    def set_slider(self, widget_id: str, value: float) -> None:
        state = WidgetState(id=widget_id)
        state.double_array_value.data.append(value)  # a single-thumb st.slider: one value in an array
        self.widgets[widget_id] = state

    def upload(self, widget_id: str, name: str, data: bytes, fragment_id: str) -> Run:
        """The file_uploader's flow: drop the file it replaces, ask for upload URLs, PUT, rerun."""
        old = self.widgets.get(widget_id)
        if old is not None and old.WhichOneof("value") == "file_uploader_state_value":
            for info in old.file_uploader_state_value.uploaded_file_info:
                self._with_xsrf("DELETE", info.file_urls.delete_url)
        urls = self._request_file_urls(name)
        self._with_xsrf("PUT", urls.upload_url, files={name: (name, data, "image/jpeg")})
        state = WidgetState(id=widget_id)
        info = state.file_uploader_state_value.uploaded_file_info.add(name=name, size=len(data))
        info.file_id = urls.file_id
        info.file_urls.CopyFrom(urls)
        self.widgets[widget_id] = state
        return self.rerun(fragment_id=fragment_id)

    def _request_file_urls(self, name: str) -> FileURLs:
        request_id = uuid.uuid4().hex
        msg = BackMsg()
        msg.file_urls_request.request_id = request_id
        msg.file_urls_request.file_names.append(name)
        msg.file_urls_request.session_id = self.session_id
        self._send(msg)
        until, stray = time.monotonic() + self.step_timeout, Run()
        while request_id not in self._file_urls:
            self._handle(self._receive(until), stray)
        resp = self._file_urls.pop(request_id)
        if resp.error_msg or not resp.file_urls:
            raise StepError(f"no upload URL: {resp.error_msg or 'empty answer'}")
        return resp.file_urls[0]

    def _with_xsrf(self, method: str, url: str, **kwargs: object) -> None:
        """Uploads and deletes carry the XSRF cookie's value in a header (the double-submit check)."""
        resp = self._http(method, url, headers={"X-Xsrftoken": self.http.cookies.get(XSRF_COOKIE, "")}, **kwargs)
        if resp.status_code >= 300:
            raise StepError(f"{method} {url} answered HTTP {resp.status_code}: {resp.text[:200]}")


# ---- light sessions -----------------------------------------------------------------------------


class Pacer:
    """A user's pauses between steps: `think` seconds on average (uniform from half to one and a
    half times it, seeded per session so that runs repeat), bounded by the deadline."""

    def __init__(self, think: float, seed: int, deadline: Deadline) -> None:
        self.think, self.deadline = think, deadline
        self.rng = np.random.default_rng(seed)

    def pause(self) -> None:
        if self.think > 0:
            time.sleep(self.deadline.bound(self.think * self.rng.uniform(0.5, 1.5)))


def places_ahead(note: str) -> int:
    """How many comparisons a page's waiting line (facecomp.app.widgets.waiting_text) put ahead; 0 for other notes."""
    words = note.split()
    return int(words[0]) if len(words) > 2 and words[0].isdigit() and "ahead of yours" in note else 0


def timed_step(session: Session, kind: str, action: Callable[[], tuple[Run, int]]) -> Run:
    """Run one step, record it, and raise StepError when the page showed a problem."""
    t0 = time.monotonic()
    step = Step(kind, at=round(t0 - STARTED, 3))
    session.steps.append(step)
    try:
        run, fetched = action()
    except (StepError, DeadlineExceeded) as err:
        step.error = str(err)
        raise
    step.total_s, step.server_s, step.fetched = time.monotonic() - t0, run.server_s, fetched
    step.images = len(run.image_urls)
    step.most_ahead = max((places_ahead(note) for note in run.notes), default=None)
    if run.errors:
        step.error = "; ".join(run.errors)[:500]
    return run


def open_compare_upload_mode(client: LightClient, session: Session) -> tuple[str, str]:
    """Compare page, radio on "Upload"; returns the file_uploader's widget id and fragment id."""

    def open_page() -> tuple[Run, int]:
        client.connect(COMPARE_PATH)
        run = client.rerun(page_name=COMPARE_PATH)  # the first run: the page named by the URL path
        return run, client.fetch_media(run)

    run = timed_step(session, "compare_open", open_page)
    radio, fragment = run.widget("radio", lambda key: key == SOURCE_KEY)
    client.set_string(radio.radio.id, "Upload")

    def choose_upload() -> tuple[Run, int]:
        run = client.rerun(fragment_id=fragment)
        return run, client.fetch_media(run)

    run = timed_step(session, "compare_radio", choose_upload)
    uploader, fragment = run.widget("file_uploader", lambda key: key == UPLOAD_KEY)
    return uploader.file_uploader.id, fragment


def upload_photo(
    client: LightClient, session: Session, kind: str, uploader: tuple[str, str], name: str, data: bytes
) -> None:
    """Upload one photo on Compare and fetch what it draws."""

    def upload() -> tuple[Run, int]:
        run = client.upload(uploader[0], name, data, uploader[1])
        fetched = client.fetch_media(run)
        if fetched == 0 and not run.errors:
            run.errors.append(f"the upload drew no new image; the page says: {' / '.join(run.notes) or '-'}")
        return run, fetched

    timed_step(session, kind, upload)


def slider_values(slider: Element, moves: int) -> list[float]:
    """`moves` values on the slider's grid, never its default (that face is already on screen) and each
    unlike the one before, so every move draws a new face: a stride through the grid's points."""
    s = slider.slider
    step = s.step or (s.max - s.min) / 100
    grid = [round(s.min + k * step, 6) for k in range(round((s.max - s.min) / step) + 1)]
    grid = [v for v in grid if not any(abs(v - d) < step / 2 for d in s.default)]
    stride = next(k for k in (7, 11, 13, 17, 1) if len(grid) % k)  # coprime: a long walk before a repeat
    return [grid[(k * stride) % len(grid)] for k in range(moves)]


def explore_sliders(client: LightClient, session: Session, moves: int, pacer: Pacer | None = None) -> None:
    """Open the explorer like a sidebar link does, then move its first editor slider `moves` times."""
    if EXPLORER_PATH not in client.pages:
        raise StepError(f"no page {EXPLORER_PATH} among {sorted(client.pages)}")

    def open_page() -> tuple[Run, int]:
        client.widgets.clear()  # a page change keeps no widget state of the old page
        run = client.rerun(page_hash=client.pages[EXPLORER_PATH])
        return run, client.fetch_media(run)

    run = timed_step(session, "explorer_open", open_page)
    slider, fragment = run.widget("slider", lambda key: key.startswith(SLIDER_PREFIX))
    session.slider_label = slider.slider.label
    for value in slider_values(slider, moves):
        if pacer:
            pacer.pause()
        client.set_slider(slider.slider.id, value)

        def move() -> tuple[Run, int]:
            run = client.rerun(fragment_id=fragment)  # what a slider inside @st.fragment sends
            fetched = client.fetch_media(run)
            if not run.errors and (run.status != FRAGMENT_DONE or fetched == 0):
                run.errors.append("the slider move did not redraw the edited face in a fragment run")
            return run, fetched

        timed_step(session, "slider_move", move)


def run_light(session: Session, client: LightClient, body: Callable[[], None]) -> Session:
    """Run one light client's steps; a failed step ends its session, recorded, never the test."""
    try:
        body()
    except (StepError, DeadlineExceeded) as err:
        session.error = f"{type(err).__name__}: {err}"[:500]
    finally:
        client.close()
        session.messages = client.message_counts()
        session.replicas = sorted(client.replicas)
    return session


def light_session(base: str, name: str, photo: int, moves: int, cfg: Config, deadline: Deadline) -> Session:
    """One user: upload a photo on Compare, then move a slider on the explorer."""
    session = Session("light", name, photo)
    client = LightClient(base, deadline, cfg.step_timeout)

    pacer = Pacer(cfg.think, photo, deadline)

    def steps() -> None:
        uploader = open_compare_upload_mode(client, session)
        pacer.pause()  # finding the photo to upload
        upload_photo(client, session, "compare_upload", uploader, f"loadtest_{photo}.jpg", photo_variant(photo))
        pacer.pause()  # looking at the comparison
        explore_sliders(client, session, moves, pacer)

    return run_light(session, client, steps)


def soak_session(
    base: str, name: str, photos: list[int], progress: Progress, cfg: Config, deadline: Deadline
) -> Session:
    """One user uploading photo after photo on Compare (each a new variant: new cache entries)."""
    session = Session("light", name, photos[0] if photos else -1)
    client = LightClient(base, deadline, cfg.step_timeout)

    def steps() -> None:
        uploader = open_compare_upload_mode(client, session)
        for photo in photos:  # a page that shows an error is recorded and the soak goes on
            upload_photo(client, session, "soak_upload", uploader, f"loadtest_{photo}.jpg", photo_variant(photo))
            progress.add()

    return run_light(session, client, steps)


def series_session(
    base: str, name: str, photo: Callable[[int], bytes], uploads: int, cfg: Config, deadline: Deadline
) -> Session:
    """One user uploading photos one after another, each a new one: photo(0), photo(1)...
    Steps "<name>_upload", e.g. large_upload (large_photo) or hd_upload (hd_photo)."""
    session = Session("light", name, 0)
    client = LightClient(base, deadline, cfg.step_timeout)

    def steps() -> None:
        uploader = open_compare_upload_mode(client, session)
        for i in range(uploads):
            upload_photo(client, session, f"{name}_upload", uploader, f"{name}_{i}.jpg", photo(i))

    return run_light(session, client, steps)


# ---- browser sessions ---------------------------------------------------------------------------


class FrameClock:
    """Decodes the browser's websocket frames: when it sent rerun_script, when script_finished came;
    and counts the media files it downloaded."""

    def __init__(self) -> None:
        self.reruns: list[float] = []
        self.finished: list[float] = []
        self.media: list[float] = []
        self.replicas: set[str] = set()  # the proxy's header on HTTP answers (the websocket's is not seen)

    def watch(self, pg: object) -> None:
        pg.on("websocket", self._attach)
        pg.on("requestfinished", self._request_finished)
        pg.on("response", self._response)

    def _response(self, response: object) -> None:
        self.replicas.update(replicas_named(response.headers))

    def _attach(self, ws: object) -> None:
        ws.on("framesent", self._sent)
        ws.on("framereceived", self._received)

    def _request_finished(self, request: object) -> None:
        if "/media/" in request.url:
            self.media.append(time.monotonic())

    def _sent(self, payload: str | bytes) -> None:
        now = time.monotonic()
        if isinstance(payload, bytes) and BackMsg.FromString(payload).WhichOneof("type") == "rerun_script":
            self.reruns.append(now)

    def _received(self, payload: str | bytes) -> None:
        now = time.monotonic()
        if isinstance(payload, bytes):
            msg = ForwardMsg.FromString(payload)
            if msg.WhichOneof("type") == "script_finished" and msg.script_finished != EARLY:
                self.finished.append(now)

    def server_time(self, since: float) -> float | None:
        """From the last rerun sent after `since` to the script_finished that followed it."""
        done = [t for t in self.finished if t > since]
        if not done:
            return None
        sent = [t for t in self.reruns if since <= t <= done[-1]]
        return done[-1] - sent[-1] if sent else None


def _wait_images(pg: object, n: int) -> None:
    pg.wait_for_function(
        "n => [...document.querySelectorAll('[data-testid=\"stImage\"] img')]"
        ".filter(i => i.complete && i.naturalWidth > 0).length >= n",
        arg=n,
    )


def _settle(pg: object, clock: FrameClock, since: float, timeout: float) -> None:
    """Wait for the run to be over: the status widget gone and a script_finished frame seen."""
    pg.wait_for_selector('[data-testid="stStatusWidget"]', state="detached")
    end = time.monotonic() + timeout
    while not any(t > since for t in clock.finished) and time.monotonic() < end:
        pg.wait_for_timeout(50)  # lets Playwright deliver the frame events


def browser_step(session: Session, pg: object, clock: FrameClock, kind: str, action: Callable[[], str | None]) -> None:
    """Time one user action; `action` returns a problem the page showed, or None."""
    t0 = time.monotonic()
    step = Step(kind, at=round(t0 - STARTED, 3))
    session.steps.append(step)
    try:
        step.error = action()
    except Exception as err:  # Playwright's timeouts and errors, the deadline: the session ends here
        step.error = f"{type(err).__name__}: {err}"[:500]
        raise
    step.total_s = time.monotonic() - t0
    _settle(pg, clock, t0, 10.0)
    step.server_s = clock.server_time(t0)
    step.images = pg.locator('[data-testid="stImage"] img').count()
    step.fetched = sum(t >= t0 for t in clock.media)
    if pg.locator('[data-testid="stException"]').count():
        step.error = "exception on the page: " + pg.locator('[data-testid="stException"]').first.inner_text()[:300]


def browser_session(
    base: str,
    name: str,
    photo: int,
    moves: int,
    label: str,
    cfg: Config,
    deadline: Deadline,
    start: Callable[[], None] = lambda: None,
) -> Session:
    """The same flow in headless Chromium: upload on Compare, slider drags on the explorer.

    start: called once Chromium is up, before the first step (a visitor's browser runs on
    their own machine: its launch is not the server's work, so it happens before the clock)."""
    from playwright.sync_api import Error as PlaywrightError
    from playwright.sync_api import sync_playwright

    session, clock = Session("browser", name, photo, slider_label=label), FrameClock()
    with tempfile.TemporaryDirectory() as tmp, sync_playwright() as pw:  # one Playwright per thread
        try:
            browser = pw.chromium.launch(executable_path=niced_chromium(Path(tmp)), args=CHROMIUM_ARGS, headless=True)
        finally:
            start()  # also when the launch failed: the other sessions must not wait for it
        try:
            pg = browser.new_page(viewport={"width": 1600, "height": 1000})
            clock.watch(pg)
            pg.set_default_timeout(deadline.bound(cfg.step_timeout) * 1000)
            photo_path = Path(tmp) / f"loadtest_{photo}.jpg"
            photo_path.write_bytes(photo_variant(photo))

            def open_compare() -> None:
                pg.goto(f"{base}/{COMPARE_PATH}")
                _wait_images(pg, COMPARE_IMAGES)

            def choose_upload() -> None:
                pg.get_by_text("Upload", exact=True).click()
                pg.locator('[data-testid="stFileUploader"] input[type="file"]').wait_for(state="attached")

            def upload() -> str | None:
                pg.locator('[data-testid="stFileUploader"] input[type="file"]').set_input_files(str(photo_path))
                pg.get_by_text(photo_path.name, exact=False).first.wait_for()
                no_face = pg.get_by_text("No face found")  # what the page says instead of the results
                pg.get_by_role("heading", name="AVIF").or_(no_face).first.wait_for()
                if no_face.count():
                    return "the upload drew no results; the page says: No face found in this photo."
                _wait_images(pg, COMPARE_IMAGES)
                return None

            def open_explorer() -> None:
                pg.goto(f"{base}/{EXPLORER_PATH}")
                pg.get_by_text("Edited").first.wait_for()
                _wait_images(pg, EXPLORER_IMAGES)

            browser_step(session, pg, clock, "compare_open", open_compare)
            browser_step(session, pg, clock, "compare_radio", choose_upload)
            browser_step(session, pg, clock, "compare_upload", upload)
            browser_step(session, pg, clock, "explorer_open", open_explorer)
            if not pg.get_by_role("slider", name=label).is_visible():
                pg.get_by_text("More directions").first.click()  # the slider sits in the collapsed expander
            for i in range(moves):
                pg.set_default_timeout(deadline.bound(cfg.step_timeout) * 1000)
                dx = 30 if (i // 3) % 2 == 0 else -30  # three drags right, three left: never stuck at an end
                browser_step(
                    session, pg, clock, "slider_move", lambda dx=dx: drag_until_redrawn(pg, label, dx, image=1)
                )
        except (PlaywrightError, DeadlineExceeded) as err:
            session.error = f"{type(err).__name__}: {err}"[:500]
        finally:
            browser.close()
    session.replicas = sorted(clock.replicas)
    return session


def niced_chromium(folder: Path) -> str:
    """A launcher that runs Chromium at the lowest priority, every process and thread.

    A visitor's browser draws on their own machine. Here it shares the server's cores, and
    would take CPU from the server's comparisons (which run at nice 10, below slider moves). Two
    things stand in the way of a low priority:
      * Run as root, Chromium raises its display threads to nice -8, so the launcher takes away
        its right to raise priorities (setpriv, CAP_SYS_NICE) and starts it at nice 19.
      * Playwright starts the browser in a session of its own, and Linux schedules each session
        as one group (autogroup) that gets an equal share of the CPU against the server's, whatever
        the nice values inside it, so in a burst a niced Chromium still takes cores that the
        server's threads wait for. The launcher sets its group's nice to 19 too
        (/proc/self/autogroup), where the kernel has autogroups.
    At nice 19 it gets what the server leaves, the nearest this machine comes to a browser
    elsewhere; the browser steps' own times then include that wait."""
    launcher = folder / "chromium"
    launcher.write_text(
        "#!/bin/sh\n"
        "[ -w /proc/self/autogroup ] && echo 19 > /proc/self/autogroup\n"
        f'exec setpriv --bounding-set -sys_nice nice -n 19 {CHROMIUM} "$@"\n'
    )
    launcher.chmod(0o755)
    return str(launcher)


def browser_problem() -> str | None:
    """Why browser sessions cannot run here, or None."""
    if not Path(CHROMIUM).exists():
        return f"{CHROMIUM} is not installed (apt-get install chromium)"
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        return "playwright is not installed (pip install playwright)"
    return None


# ---- phases -------------------------------------------------------------------------------------


def run_parallel(jobs: list[Callable[[], Session]], deadline: Deadline) -> list[Session]:
    """Run every job in its own thread at once; a thread still busy after the deadline is reported."""
    results: list[Session | None] = [None] * len(jobs)

    def work(i: int) -> None:
        try:
            results[i] = jobs[i]()
        except Exception as err:  # a bug in one client must not hide the others' numbers
            results[i] = Session("?", f"job {i}", -1, error=f"crashed: {err!r}"[:500])

    threads = [threading.Thread(target=work, args=(i,), daemon=True) for i in range(len(jobs))]
    for t in threads:
        t.start()
    end = deadline.end + 30  # every wait inside is bounded by the deadline; 30 s to wind down
    for t in threads:
        t.join(timeout=max(0.0, end - time.monotonic()))
    return [r or Session("?", f"job {i}", -1, error="still running at the deadline") for i, r in enumerate(results)]


SOAK_FIRST_PHOTO = 1_000_000  # photo numbers no earlier phase uses: every soak upload is a new photo


def soak_photo_lists(cfg: Config, first_photo: int) -> list[list[int]]:
    """Split --soak-reruns fresh photo numbers over the soak clients."""
    photos = list(range(first_photo, first_photo + cfg.soak_reruns))
    return [photos[i :: cfg.soak_clients] for i in range(cfg.soak_clients) if photos[i :: cfg.soak_clients]]


# ---- report -------------------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    return float(np.percentile(values, q))


def step_stats(sessions: list[Session]) -> dict[str, dict[str, float | int | None]]:
    by_kind: dict[str, list[Step]] = collections.defaultdict(list)
    for s in sessions:
        for step in s.steps:
            by_kind[step.kind].append(step)
    out = {}
    for kind, steps in by_kind.items():
        row: dict[str, float | int | None] = {"n": len(steps), "errors": sum(s.error is not None for s in steps)}
        for attr in ("server_s", "total_s"):
            values = [getattr(s, attr) for s in steps if getattr(s, attr) is not None and s.error is None]
            for name, q in (("p50", 50), ("p95", 95), ("max", 100)):
                row[f"{attr}_{name}"] = round(percentile(values, q), 3) if values else None
        out[kind] = row
    return out


def group_report(sessions: list[Session]) -> dict[str, object]:
    errors = [st.error for s in sessions for st in s.steps if st.error]
    # A session's own error counts only when no step holds it (e.g. a crash between steps).
    errors += [s.error for s in sessions if s.error and not any(st.error for st in s.steps)]
    return {
        "sessions": len(sessions),
        "served": sum(s.ok for s in sessions),
        "failed": sum(not s.ok for s in sessions),
        "errors": len(errors),
        "error_kinds": dict(collections.Counter(e[:120] for e in errors).most_common(10)),
        "steps": step_stats(sessions),
        "messages": dict(sum((collections.Counter(s.messages) for s in sessions), collections.Counter())),
        # The waiting line: uploads whose page said how many comparisons were ahead, and the most.
        "uploads_shown_waiting": sum(bool(st.most_ahead) for s in sessions for st in s.steps),
        "most_ahead": max((st.most_ahead or 0 for s in sessions for st in s.steps), default=0),
    }


def stickiness(sessions: list[Session]) -> dict[str, object]:
    """Over every session: how many stayed on one replica, and the sessions each replica served."""
    used = collections.Counter(r for s in sessions for r in s.replicas)
    return {
        "sessions": len(sessions),
        "one_replica": sum(len(s.replicas) == 1 for s in sessions),
        "replicas_used": dict(sorted(used.items())),
    }


def fmt(v: float | None) -> str:
    return "     -" if v is None else f"{v:6.2f}"


def print_group(title: str, report: dict[str, object]) -> None:
    counts = f"{report['served']} served, {report['failed']} failed, {report['errors']} errors"
    print(f"\n{title}: {report['sessions']} sessions, {counts}")
    print(f"  {'step':15} {'n':>4} {'err':>4} | server s  p50    p95    max | total s   p50    p95    max")
    for kind, r in report["steps"].items():
        server = " ".join(fmt(r[f"server_s_{q}"]) for q in ("p50", "p95", "max"))
        total = " ".join(fmt(r[f"total_s_{q}"]) for q in ("p50", "p95", "max"))
        print(f"  {kind:15} {r['n']:4} {r['errors']:4} |        {server} |        {total}")
    for message, count in report["error_kinds"].items():
        print(f"  error x{count}: {message}")
    if report["uploads_shown_waiting"]:
        waited = f"{report['uploads_shown_waiting']} uploads showed the waiting line"
        print(f"  {waited}, at most {report['most_ahead']} comparisons ahead")


def print_summary(result: dict[str, object]) -> None:
    base = result.get("baseline")
    if base:
        moves = base["report"]["steps"].get("slider_move", {})
        print("\nOne user (a light client alone):")
        p50, p95 = fmt(moves.get("server_s_p50")), fmt(moves.get("server_s_p95"))
        print(f"  slider move, server time: p50 {p50} s, p95 {p95} s")
        print_group("  baseline session", base["report"])
    for key, title in PHASE_GROUPS:
        if result.get(key):
            print_group(title, result[key]["report"])
    sticky = result.get("stickiness")
    if sticky:
        print(
            f"\nSticky sessions: {sticky['one_replica']} of {sticky['sessions']} on one replica; "
            f"replicas used: {sticky['replicas_used']}"
        )
    mem = result["memory_mib"]
    replicas = int(result["config"].get("replicas", 1))
    if replicas > 1:
        print(f"\nServer memory (VmRSS of the {replicas} replicas and their children, summed, MiB):")
    else:
        print("\nServer memory (VmRSS of the server and its children, MiB):")
    for key, value in mem.items():
        for name, v in value.items() if isinstance(value, dict) else [(key, value)]:
            print(f"  {name:28} {v}")
    print(f"\nCPU seconds per phase ({os.cpu_count()} cores):")
    for phase, cpu in result["cpu_seconds"].items():
        print(f"  {phase:9} " + ", ".join(f"{k} {v}" for k, v in cpu.items()))
    hd = result.get("hd")
    if hd and hd.get("cpu_per_upload_s") is not None:
        print(f"Server CPU per 1080p upload: {hd['cpu_per_upload_s']} s over {hd['uploads_done']} uploads")
    log = result["server_log"]
    print(f"\nServer log: {log['tracebacks']} tracebacks. Phase times (s): {result['phase_seconds']}")
    if result.get("browsers_skipped"):
        print(f"No browser sessions: {result['browsers_skipped']}")
    if result.get("stopped_early"):
        print(f"Stopped early: {result['stopped_early']}")
    if "server_exit_code" in result:
        print("  The server's last lines are in the JSON (server_log.tail). To measure memory alone, without")
        print("  concurrent reruns: --clients 0 --browsers 0 --soak-clients 1")


# ---- main ---------------------------------------------------------------------------------------


class LoadTest:
    """The phases against the server (or its replicas); `result` collects everything for the summary
    and the JSON."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.deadline = Deadline(time.monotonic() + cfg.max_seconds)
        self.base = ""
        self.servers = Servers(cfg.weights, cfg.replicas)
        self.soak_progress = Progress()
        self.server_cpu: dict[str, float] = {}  # each phase's server CPU seconds, unrounded
        self.sessions: list[Session] = []  # every phase's, for the stickiness summary
        self.memory: dict[str, float | int | None] = {}
        self.result: dict[str, object] = {
            "config": {k: str(v) for k, v in asdict(cfg).items()},
            "phase_seconds": {},
            "cpu_seconds": {},
            "memory_mib": self.memory,
        }

    def run(self) -> dict[str, object]:
        t_start = time.monotonic()
        problem = browser_problem() if self.cfg.browsers else None
        if problem:
            self.result["browsers_skipped"] = problem
            print(f"no browser sessions: {problem}", flush=True)
        cfg = self.cfg
        soak_photos = [p for photos in soak_photo_lists(cfg, SOAK_FIRST_PHOTO) for p in photos]
        prepare_photos([0, *range(1, 1 + cfg.clients + cfg.browsers), *soak_photos])  # before any clock runs
        for photo in range(cfg.large_uploads):
            large_photo(photo)
        for photo in range(cfg.hd_uploads):
            hd_photo(photo)
        sampler = None
        try:
            self.servers.start(self.deadline)
            self.base = self.servers.base
            self.note_memory("healthy")
            self.result["phase_seconds"]["server_start"] = round(time.monotonic() - t_start, 1)
            if cfg.replicas > 1:
                where = f"{cfg.replicas} replicas healthy behind HAProxy at {self.base}"
                print(f"{where} ({self.memory['healthy']} MiB in all); weights {self.cfg.weights}")
            else:
                print(f"server healthy at {self.base} ({self.memory['healthy']} MiB); weights {self.cfg.weights}")
            sampler = MemorySampler(self.servers.rss, self.soak_progress)
            label = self.phase("baseline", sampler, self.baseline)
            self.phase("load", sampler, lambda: self.load(0 if problem else self.cfg.browsers, label))
            if self.cfg.soak_reruns > 0:
                self.phase("soak", sampler, self.soak)
            if self.cfg.large_uploads > 0:
                self.phase("large", sampler, self.large)
            if self.cfg.hd_uploads > 0:
                self.phase("hd", sampler, self.hd)
                done = self.result["hd"]["uploads_done"]
                self.result["hd"]["cpu_per_upload_s"] = round(self.server_cpu["hd"] / done, 2) if done else None
        except (DeadlineExceeded, ServerDied, TimeoutError, RuntimeError) as err:
            self.result["stopped_early"] = f"{type(err).__name__}: {err}"
        finally:
            if sampler is not None:
                sampler.stop()
                self.result["memory_samples"] = sampler.samples
                self.memory["peak_sampled"] = max((s[3] for s in sampler.samples), default=None)
            self.servers.stop()
            self.result["server_log"] = self.servers.log_report()
        if cfg.replicas > 1:
            self.result["stickiness"] = stickiness(self.sessions)
        self.growth(self.result.get("memory_samples", []))
        self.result["total_seconds"] = round(time.monotonic() - t_start, 1)
        return self.result

    def rss(self) -> float:
        return round(self.servers.rss(), 1)

    def note_memory(self, key: str) -> float:
        """VmRSS at rest (summed over the replicas), kept under `key`, with its heap and file-backed
        parts beside it, and what Streamlit counts in its caches (part of the heap); with replicas,
        also the largest replica's VmRSS. At rest: MEMORY_SETTLE_S after the phase, by when the
        server has given its heavy jobs' working memory back (facecomp.app.server, HeavyPool.IDLE_S)."""
        if key != "healthy":
            time.sleep(self.deadline.bound(MEMORY_SETTLE_S))
        self.memory[key] = self.rss()
        if self.cfg.replicas > 1:
            self.memory[f"{key}_largest_replica"] = round(self.servers.largest_rss(), 1)
        parts = self.memory.setdefault("parts", {})
        for part in ("RssAnon", "RssFile"):
            parts[f"{key}_{part}"] = round(self.servers.rss(part), 1)
        parts[f"{key}_caches"] = self.servers.held_mib()
        return self.memory[key]

    def phase(self, name: str, sampler: MemorySampler, body: Callable[[], object]) -> object:
        self.deadline.bound(1.0)  # no new phase after the deadline: stop early instead
        sampler.phase, t0 = name, time.monotonic()

        def clocks() -> tuple[float, float, float, float]:
            return self.servers.cpu(), time.process_time(), machine_busy_seconds(), self.servers.proxy_cpu()

        cpu0 = clocks()
        out = body()
        self.result["phase_seconds"][name] = round(time.monotonic() - t0, 1)
        server, clients, machine, proxy = (b - a for a, b in zip(cpu0, clocks()))
        self.server_cpu[name] = server
        # Where the cores went: the server's share is what the step times can be read against.
        cpu = {
            "wall": self.result["phase_seconds"][name],
            "server": round(server, 1),
            "light_clients": round(clients, 1),
        }
        if self.servers.proxy is not None:
            cpu["proxy"] = round(proxy, 1)
        cpu["rest_of_machine"] = round(machine - server - clients - proxy, 1)  # Chromium, the OS
        self.result["cpu_seconds"][name] = cpu
        dead = self.servers.exited()  # e.g. -11: a segfault in native code under concurrent use
        if dead:
            self.result["server_exit_code"] = next(iter(dead.values())) if self.cfg.replicas == 1 else dead
            said = ", ".join(f"{who} exited with status {code}" for who, code in dead.items())
            raise ServerDied(f"{said} during the {name} phase")
        print(f"{name} done in {self.result['phase_seconds'][name]} s; server RSS {self.rss()} MiB", flush=True)
        return out

    def record(self, key: str, sessions: list[Session], **extra: object) -> None:
        if self.cfg.replicas > 1:  # behind the proxy, a session must stay on one replica
            for s in sessions:
                if len(s.replicas) != 1 and s.error is None:
                    where = f"replicas {', '.join(s.replicas)}" if s.replicas else f"no replica (no {REPLICA_HEADER})"
                    s.error = f"not sticky: answered by {where}"
        self.sessions += sessions
        self.result[key] = {**extra, "report": group_report(sessions), "sessions": [asdict(s) for s in sessions]}

    def baseline(self) -> str:
        """One user alone; also the warm-up that loads every model. Returns the slider's label."""
        one = light_session(self.base, "baseline", 0, self.cfg.baseline_moves, self.cfg, self.deadline)
        self.record("baseline", [one])
        self.note_memory("after_warmup")
        if not one.ok:
            print(f"baseline session failed: {one.error or [s.error for s in one.steps if s.error][0]}")
        return one.slider_label or "Direction 1"

    def load(self, browsers: int, label: str) -> None:
        cfg = self.cfg
        n = cfg.clients + browsers
        # Every session first waits for the browsers to be launched, then starts at its slot
        # of the ramp; the browsers' slots are spread among the light clients' ones.
        line = threading.Barrier(n)
        browser_slots = [round((i + 1) * n / (browsers + 1)) for i in range(browsers)]
        light_slots = [slot for slot in range(n) if slot not in browser_slots]

        def start(slot: int) -> Callable[[], None]:
            def wait() -> None:
                try:
                    line.wait(timeout=self.deadline.bound(120))
                except threading.BrokenBarrierError:
                    pass  # a launch took too long: start anyway
                time.sleep(self.deadline.bound(slot * cfg.ramp / n))

            return wait

        def light(i: int) -> Session:
            start(light_slots[i])()
            return light_session(self.base, f"light{i}", 1 + i, cfg.slider_moves, cfg, self.deadline)

        jobs: list[Callable[[], Session]] = [functools.partial(light, i) for i in range(cfg.clients)]
        jobs += [
            functools.partial(
                browser_session,
                self.base,
                f"browser{i}",
                1 + cfg.clients + i,
                cfg.slider_moves,
                label,
                cfg,
                self.deadline,
                start(browser_slots[i]),
            )
            for i in range(browsers)
        ]
        sessions = run_parallel(jobs, self.deadline)
        self.record("load_light", sessions[: cfg.clients])
        self.record("load_browsers", sessions[cfg.clients :])
        self.note_memory("after_load")

    def soak(self) -> None:
        jobs = [
            lambda i=i, photos=photos: soak_session(
                self.base, f"soak{i}", photos, self.soak_progress, self.cfg, self.deadline
            )
            for i, photos in enumerate(soak_photo_lists(self.cfg, SOAK_FIRST_PHOTO))
        ]
        sessions = run_parallel(jobs, self.deadline)
        uploads = sum(st.kind == "soak_upload" and st.error is None for s in sessions for st in s.steps)
        self.record("soak", sessions, uploads_done=uploads)
        self.note_memory("after_soak")
        self.memory["soak_uploads_done"] = uploads

    def large(self) -> None:
        """Photos of 39 megapixels (120 MB decoded each): what the app keeps of a photo must not
        grow with its size, whatever the number of photos its caches hold."""
        self.record(
            "large", [series_session(self.base, "large", large_photo, self.cfg.large_uploads, self.cfg, self.deadline)]
        )
        self.note_memory("after_large")

    def hd(self) -> None:
        """1920x1080 photos, as most phones and screenshots make them: the server's CPU per upload."""
        session = series_session(self.base, "hd", hd_photo, self.cfg.hd_uploads, self.cfg, self.deadline)
        done = sum(st.kind == "hd_upload" and st.error is None for st in session.steps)
        self.record("hd", [session], uploads_done=done)
        self.note_memory("after_hd")

    def growth(self, samples: list[tuple[float, str, int, float]]) -> None:
        """Growth after the warm-up (all models loaded): the caches are bounded, so it should be small,
        and it should stop once they are full: the soak's second half should add next to nothing."""
        warm = self.memory.get("after_warmup")
        for key in ("after_load", "after_soak", "after_large", "after_hd"):
            if warm and self.memory.get(key):
                self.memory[f"growth_{key}_pct"] = round(100 * (self.memory[key] - warm) / warm, 1)
        done, end = self.memory.get("soak_uploads_done"), self.memory.get("after_soak")
        half = next((s[3] for s in samples if s[1] == "soak" and done and s[2] >= done / 2), None)
        if half and end:
            self.memory["soak_half_way"] = half
            self.memory["growth_soak_second_half_pct"] = round(100 * (end - half) / half, 1)


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    plan = f"{cfg.clients} light clients, {cfg.browsers} browsers, {cfg.slider_moves} slider moves"
    plan += f", think {cfg.think:g} s, ramp {cfg.ramp:g} s"
    if cfg.hd_uploads:
        plan += f", {cfg.hd_uploads} 1080p uploads"
    if cfg.replicas > 1:
        plan += f"; {cfg.replicas} replicas behind HAProxy"
    print(f"load test: {plan}, {cfg.soak_reruns} soak uploads; deadline {cfg.max_seconds:.0f} s", flush=True)
    result = LoadTest(cfg).run()
    print_summary(result)
    if cfg.json_out:
        cfg.json_out.write_text(json.dumps(result, indent=1, default=str))
        print(f"\nwrote {cfg.json_out}")
    groups = [result.get(k) for k in ("baseline", *(key for key, _ in PHASE_GROUPS))]
    failed = sum(g["report"]["failed"] for g in groups if g)
    return 1 if failed or result.get("stopped_early") else 0


if __name__ == "__main__":
    sys.exit(main())
