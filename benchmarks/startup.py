"""Start-up: what the extension adds to the server's start and what `%load_ext` costs a kernel.

Server: `jupyter server` launched again and again, with the extension enabled and disabled in
turn, each timed from launch to Jupyter's own /api/status answering. The first pair warms the
OS caches and is dropped; the enabled server reopens its existing store, as a student's does.
The import share is measured apart, in fresh interpreters that have already imported
jupyter_server (which Jupyter does anyway), since it is the largest and least noisy part.

Kernel: in fresh kernels started by a server with the extension (so the kernel can reach it),
the time `%load_ext timeback_jupyter` takes, timed inside the kernel.

Every process caches compiled modules, as a pip-installed package has them (pip writes the .pyc
files at install), in a private cache for the run: the first start, import and kernel of each
kind fill it and are dropped. Without this, an environment with PYTHONDONTWRITEBYTECODE=1 (this
machine's) compiles our package from source in every process but loads Jupyter's .pyc, which
charges the extension a cost no installed copy has; that figure is kept apart, as measured.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from .common import ROOT, Result, say
from .jupyter import (
    JupyterServer,
    KernelSocket,
    activity,
    free_port,
    server_args,
    server_env,
    write_notebook,
)

TARGET_MS = 100.0

IMPORT_PROBE = """
import time, jupyter_server.serverapp, jupyter_server.extension.application
t = time.perf_counter()
import timeback_jupyter
timeback_jupyter._jupyter_server_extension_points()
print(time.perf_counter() - t)
"""

# What each side newly imports, by top-level module, with python -X importtime.
BREAKDOWN_PROBES = {
    "server": (
        "import jupyter_server.serverapp, jupyter_server.extension.application",
        "import timeback_jupyter; timeback_jupyter._jupyter_server_extension_points()",
    ),
    "kernel": (
        "import ipykernel.kernelapp, ipykernel.ipkernel, IPython, ipywidgets",
        "import timeback_jupyter.kernel.magics, timeback_jupyter.kernel.session",
    ),
}
MARK = "--timeback-import-mark--"

# ServerApp.initialize is the part of a start an extension takes part in: Jupyter finds,
# imports, links and loads its extensions there (ours: config, store opened, routes), binds its
# port and sets up its managers. Timed in a fresh interpreter that has already imported
# ServerApp, so the interpreter's own start and Jupyter's import, the same for both arms, are
# left out. Each extension's own steps are timed too (Jupyter's ExtensionPackage imports the
# package, ExtensionPoint links and loads it), which isolates ours from the noise of the rest.
INITIALIZE_PROBE = """
import collections, json, os, sys, time
from jupyter_server.extension import manager
from jupyter_server.serverapp import ServerApp

own = collections.Counter()

def timed(cls, method, name_of):
    original = getattr(cls, method)
    def wrapper(self, *args, **kwargs):
        t = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            own[name_of(self)] += time.perf_counter() - t
    setattr(cls, method, wrapper)

timed(manager.ExtensionPackage, "_load_metadata", lambda pkg: pkg.name)
timed(manager.ExtensionPoint, "link", lambda point: point.module_name.split(".")[0])
timed(manager.ExtensionPoint, "load", lambda point: point.module_name.split(".")[0])
app = ServerApp()
t = time.perf_counter()
app.initialize(argv=sys.argv[1:])
print(json.dumps({"initialize": time.perf_counter() - t, "own": own}), flush=True)
os._exit(0)  # no event loop was started: nothing to shut down but the process
"""

LOAD_EXT_PROBE = """
import time as _tb_t
_tb_s = _tb_t.perf_counter()
get_ipython().run_line_magic("load_ext", "timeback_jupyter")
print("LOAD_EXT", _tb_t.perf_counter() - _tb_s)
"""


def cached_bytecode(workdir: Path) -> dict[str, str]:
    """Environment overrides: compiled modules cached under ``workdir`` (see the docstring)."""
    # An empty PYTHONDONTWRITEBYTECODE counts as unset; the prefix keeps the shared checkout
    # and site-packages untouched.
    return {"PYTHONDONTWRITEBYTECODE": "", "PYTHONPYCACHEPREFIX": str(workdir / "pycache")}


def server_start(workdir: Path, pairs: int) -> dict[str, list[float]]:
    root = workdir / "notebooks"
    root.mkdir()
    write_notebook(root, "lesson.ipynb", {"activity": activity(1)})
    times: dict[str, list[float]] = {"on": [], "off": []}
    for i in range(pairs + 1):
        for name in ("on", "off") if i % 2 == 0 else ("off", "on"):
            server = JupyterServer(
                workdir / name, root, extension=name == "on", env=cached_bytecode(workdir)
            )
            try:
                seconds = server.wait_ready()
            finally:
                server.stop()
            if i > 0:
                times[name].append(seconds)
        say(f"startup: server pair {i}/{pairs} done")
    return times


def server_initialize(workdir: Path, pairs: int) -> dict[str, list[float]]:
    """ServerApp.initialize with the extension enabled and disabled in turn (see the probe),
    and the extension's own import, link and load within the enabled ones (``own``)."""
    root = workdir / "init-notebooks"
    root.mkdir()
    write_notebook(root, "lesson.ipynb", {"activity": activity(1)})
    times: dict[str, list[float]] = {"on": [], "off": [], "own": []}
    for i in range(pairs + 1):
        for name in ("on", "off") if i % 2 == 0 else ("off", "on"):
            env = server_env(workdir / f"init-{name}", name == "on", env=cached_bytecode(workdir))
            done = subprocess.run(
                [sys.executable, "-c", INITIALIZE_PROBE, *server_args(free_port(), root)],
                cwd=ROOT,
                capture_output=True,
                text=True,
                env=env,
                timeout=120,
            )
            if done.returncode != 0:
                raise RuntimeError(f"ServerApp.initialize failed: {done.stderr[-2000:]}")
            probe = json.loads(done.stdout.strip().splitlines()[-1])
            if i > 0:  # the first pair fills the bytecode cache and creates the store
                times[name].append(probe["initialize"])
                if name == "on":
                    times["own"].append(probe["own"]["timeback_jupyter"])
    return times


def import_cost(samples: int, env: dict[str, str] | None) -> list[float]:
    """``samples`` import times; with ``env`` (cached bytecode), after one dropped run."""
    out = []
    for i in range(samples + (env is not None)):
        done = subprocess.run(
            [sys.executable, "-c", IMPORT_PROBE],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **env} if env is not None else None,
        )
        if env is None or i > 0:
            out.append(float(done.stdout.strip().splitlines()[-1]))
    return out


def import_breakdown(side: str, env: dict[str, str], top: int = 8) -> list[dict[str, Any]]:
    """What importing our side costs beyond what Jupyter already loaded: each of our modules
    (its own time) and each library we are the first to import (all of it).

    ``-X importtime`` lists modules children first; rebuilding the tree lets us charge each
    third-party library to us only when one of our modules is the first to import it. The
    probe runs twice and the second run counts (the first fills the bytecode cache).
    """
    before, after = BREAKDOWN_PROBES[side]
    mark = f"import sys; sys.stderr.write({MARK!r} + '\\n'); sys.stderr.flush()"
    for _ in range(2):
        done = subprocess.run(
            [sys.executable, "-X", "importtime", "-c", f"{before}\n{mark}\n{after}"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
            env={**os.environ, **env},
        )
    pending: list[tuple[int, int, int, str, list[Any]]] = []
    for line in done.stderr.split(MARK, 1)[1].splitlines():
        if not line.startswith("import time:"):
            continue
        own, cumulative, name = line.split("|", 2)
        depth = (len(name) - len(name.lstrip())) // 2  # two spaces per nesting level
        children = []
        while pending and pending[-1][0] == depth + 1:
            children.insert(0, pending.pop())
        own_us = int(own.split(":", 1)[1].strip())
        pending.append((depth, own_us, int(cumulative.strip()), name.strip(), children))
    costs: dict[str, float] = {}

    def charge(node: tuple[int, int, int, str, list[Any]]) -> None:
        _depth, own_us, cumulative_us, name, children = node
        if name.split(".")[0] == "timeback_jupyter":
            costs[name] = costs.get(name, 0) + own_us
            for child in children:
                charge(child)
        else:
            library = name.split(".")[0]
            costs[library] = costs.get(library, 0) + cumulative_us

    for node in pending:
        charge(node)
    ranked = sorted(costs.items(), key=lambda kv: kv[1], reverse=True)
    return [{"module": name, "ms": us / 1000} for name, us in ranked[:top]]


async def _load_ext_once(server: JupyterServer, path: str) -> tuple[float | None, str]:
    session = server.open(path)
    kernel_id = session["kernel"]["id"]
    sock = await KernelSocket.connect(server, kernel_id)
    try:
        msg_text = await sock.output(LOAD_EXT_PROBE)
    finally:
        sock.close()
        server.http.delete(f"/api/sessions/{session['id']}")
    for line in msg_text.splitlines():
        if line.startswith("LOAD_EXT "):
            return float(line.split()[1]), ""
    return None, msg_text[-500:]


def load_ext(workdir: Path, samples: int) -> tuple[list[float], str]:
    root = workdir / "kernel-notebooks"
    root.mkdir()
    path = write_notebook(root, "lesson.ipynb", {"activity": activity(2)})
    times: list[float] = []
    problem = ""
    env = cached_bytecode(workdir)
    with JupyterServer(workdir / "kernel-server", root, extension=True, env=env) as server:
        server.wait_ready()
        # The first kernel compiles our kernel-side modules into the cache: dropped.
        for i in range(samples + 1):
            seconds, problem = asyncio.run(_load_ext_once(server, path))
            if seconds is None:
                break
            if i > 0:
                times.append(seconds)
            say(f"startup: %load_ext sample {i}/{samples}")
    return times, problem


def run(quick: bool = False) -> Result:
    pairs = 2 if quick else 7
    samples = 3 if quick else 7
    with tempfile.TemporaryDirectory(prefix="tb-bench-startup-") as tmp:
        workdir = Path(tmp)
        starts = server_start(workdir, pairs)
        say("startup: ServerApp.initialize with and without the extension")
        inits = server_initialize(workdir, pairs)
        say("startup: import cost in fresh interpreters")
        imports = import_cost(samples, cached_bytecode(workdir))
        imports_as_is = import_cost(samples, None)
        ext_times, ext_problem = load_ext(workdir, samples)
        breakdown = {
            side: import_breakdown(side, cached_bytecode(workdir)) for side in BREAKDOWN_PROBES
        }
    pair_diffs = [(a - b) * 1000 for a, b in zip(starts["on"], starts["off"], strict=True)]
    on, off = statistics.median(starts["on"]), statistics.median(starts["off"])
    added_ms = (on - off) * 1000
    import_ms = statistics.median(imports) * 1000
    own_ms = statistics.median(inits["own"]) * 1000
    init_on, init_off = statistics.median(inits["on"]), statistics.median(inits["off"])
    as_is_ms = statistics.median(imports_as_is) * 1000
    no_bytecode = bool(os.environ.get("PYTHONDONTWRITEBYTECODE"))
    load_ms = statistics.median(ext_times) * 1000 if ext_times else None
    notes = [
        "Server start is timed from launch to Jupyter's /api/status answering: the extension "
        "has loaded by then, and its store is open.",
        "The difference of two medians of whole starts (or of ServerApp.initialize) is noisy: "
        "a Jupyter start takes seconds and varies by more than the target from one launch to "
        "the next. The figure held to the target is the extension's own part of the start, "
        "timed inside Jupyter in the enabled initialize launches: the import of the package "
        "(ExtensionPackage), then linking and loading it (ExtensionPoint.link and .load: config, "
        "store opened, routes added). What the extension does once the server runs (recovering "
        "the outbox, starting delivery) happens on the running event loop, and the SDK's "
        "import in a thread after that.",
        "Compiled modules are cached, as an installed package has them; the import as this "
        "environment runs it"
        + (
            " (PYTHONDONTWRITEBYTECODE=1: our modules compiled from source in every process, "
            "Jupyter's loaded from its .pyc)"
            if no_bytecode
            else ""
        )
        + f" took {as_is_ms:.0f} ms.",
        "The SDK (timeback_caliper, timeback_common: pydantic, httpx) is imported on first use "
        "and warmed in a thread once the server has started, off its event loop; the kernel "
        "side calls its server with the standard library.",
    ]
    if ext_problem:
        notes.append(f"%load_ext timeback_jupyter did not work here: {ext_problem}")
    passed = None
    if load_ms is not None:
        passed = own_ms < TARGET_MS and load_ms < TARGET_MS
    return Result(
        name="startup",
        title="Start-up",
        command="python -m benchmarks startup",
        target=f"added server start < {TARGET_MS:g} ms (the extension's import, link and load "
        f"within Jupyter's start), %load_ext < {TARGET_MS:g} ms",
        passed=passed,
        quick=quick,
        params={"server_pairs": pairs, "samples": samples},
        metrics={
            "server_start_s": {
                "with_extension_median": on,
                "without_extension_median": off,
                "with_extension": starts["on"],
                "without_extension": starts["off"],
            },
            "server_start_added_ms": added_ms,
            # held to the target: the extension's own steps within ServerApp.initialize
            "extension_own_start_ms": {
                "median": own_ms,
                "samples": [x * 1000 for x in inits["own"]],
            },
            "initialize_s": {
                "with_extension_median": init_on,
                "without_extension_median": init_off,
                "with_extension": inits["on"],
                "without_extension": inits["off"],
            },
            "initialize_added_ms": (init_on - init_off) * 1000,
            "server_start_added_ms_per_pair": pair_diffs,
            "server_start_ratio": on / off,
            "extension_import_ms": {
                "median": import_ms,
                "samples": [x * 1000 for x in imports],
            },
            "extension_import_as_is_ms": {
                "median": as_is_ms,
                "samples": [x * 1000 for x in imports_as_is],
                "pythondontwritebytecode": no_bytecode,
            },
            "load_ext_ms": {
                "median": load_ms,
                "samples": [x * 1000 for x in ext_times],
            },
            "import_breakdown_ms": breakdown,
        },
        notes=notes,
    )


def render(r: dict[str, Any]) -> str:
    m = r["metrics"]
    s = m["server_start_s"]
    load = m["load_ext_ms"]
    load_text = "not measured" if load["median"] is None else f"**{load['median']:.0f} ms**"
    as_is = m.get("extension_import_as_is_ms")  # absent from results saved before it existed
    as_is_row = []
    if as_is is not None:
        how = (
            "our modules compiled from source (PYTHONDONTWRITEBYTECODE=1)"
            if as_is["pythondontwritebytecode"]
            else "the environment as it is"
        )
        as_is_row = [f"| importing the extension, {how} | {as_is['median']:.0f} ms |"]
    init_rows = []
    own = m.get("extension_own_start_ms")  # absent from results saved before it existed
    if own is not None:
        i = m["initialize_s"]
        init_rows = [
            f"| ServerApp.initialize, extension enabled | {i['with_extension_median']:.2f} s |",
            f"| ServerApp.initialize, extension disabled | {i['without_extension_median']:.2f} s |",
            f"| difference of the medians | {m['initialize_added_ms']:+.0f} ms |",
            f"| **the extension's own steps in the start** (import, link, load; timed inside "
            f"Jupyter) | **{own['median']:.0f} ms** |",
        ]
    return "\n".join(
        [
            "| | median |",
            "|---|---|",
            f"| server start, extension enabled | {s['with_extension_median']:.2f} s |",
            f"| server start, extension disabled | {s['without_extension_median']:.2f} s |",
            f"| difference of the medians (ratio) | {m['server_start_added_ms']:+.0f} ms "
            f"({m['server_start_ratio']:.3f}) |",
            *init_rows,
            f"| importing the extension alone, after jupyter_server | "
            f"{m['extension_import_ms']['median']:.0f} ms |",
            *as_is_row,
            f"| `%load_ext timeback_jupyter` in a fresh kernel | {load_text} |",
            "",
            f"{r['params']['server_pairs']} start pairs (and as many initialize pairs) after "
            f"one warm-up pair each (whole-start differences per "
            f"pair: {', '.join(f'{x:+.0f}' for x in m['server_start_added_ms_per_pair'])} ms); "
            f"{r['params']['samples']} import and %load_ext samples.",
            "",
            "Where the import time goes (one `python -X importtime` run with cached bytecode: "
            "each of our modules by its own time, a library only when we are the first to "
            "import it):",
            "",
            "| side | module or library | ms |",
            "|---|---|---|",
            *[
                f"| {side} | {row['module']} | {row['ms']:.0f} |"
                for side, rows in m["import_breakdown_ms"].items()
                for row in rows
            ],
        ]
    )
