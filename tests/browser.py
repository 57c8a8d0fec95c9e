"""The browser-test harness: the real server as a process, headless Chromium with fake camera
and microphone, pages of the web client (commandcenter/static) signed in with real tokens.

Two halves. `run_in_namespace` is what the pytest test calls: it runs
`tests/browser_scenario.py` in a fresh network namespace (`unshare -n`) and returns the JSON
line it prints. The rest is used by that script, inside the namespace: there only `lo`
exists, so the server, its media and Chromium all meet on 127.0.0.1 (outside, Chromium would
pick the machine's other interface for media, and aioice never offers loopback).

Chromium is Debian's (/usr/bin/chromium), never a browser Playwright downloads.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import traceback
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from playwright.async_api import Browser, BrowserContext, Page, Playwright, async_playwright

from commandcenter.auth import Role, issue_token

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--no-sandbox",
    # Grant camera and microphone without a prompt, and feed them a synthetic picture and tone.
    "--use-fake-ui-for-media-stream",
    "--use-fake-device-for-media-stream",
    # No calls home: the namespace has no network, and they would only cost time.
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    # Without it Chromium gathers no 127.0.0.1 candidates at all.
    "--allow-loopback-in-peer-connection",
)
REPO = Path(__file__).resolve().parent.parent
APP_PATH = "/app/index.html"
SECRET = "browser-test-secret-long-enough-for-hs256"
SERVER_START_S = 20.0
SERVER_STOP_S = 5.0
LOG_TAIL_LINES = 40

T = TypeVar("T")


def chromium_missing() -> str | None:
    """Why browser tests cannot run here, or None. `make test` installs what is missing."""
    if not CHROMIUM.exists():
        return f"{CHROMIUM} is not installed (`make system` installs it)"
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "unshare or ip (util-linux, iproute2) is missing"
    return None


# ---- the pytest side: one namespace run --------------------------------------------------


@dataclasses.dataclass(frozen=True)
class NamespaceRun:
    result: dict[str, Any]
    returncode: int
    stderr: str


def run_in_namespace(
    scenarios: list[str], *, timeout_s: float, module: str = "tests.browser_scenario"
) -> NamespaceRun:
    """Run `module` (browser_scenario.py) with `scenarios` in a new network namespace; its
    last stdout line is the JSON result. The whole process group is killed if it overruns."""
    # As root a network namespace needs nothing more; otherwise a user namespace maps us to
    # root inside it, which is enough to bring `lo` up.
    unshare = ["unshare", "-n"] if os.geteuid() == 0 else ["unshare", "-rn"]
    argv = [*unshare, "--", sys.executable, "-m", module, *scenarios]
    # A session of its own, so that on a timeout the server and Chromium go with it.
    proc = subprocess.Popen(
        argv,
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
        text=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return NamespaceRun({"error": f"timed out after {timeout_s} s"}, -9, err)
    lines = [line for line in out.splitlines() if line.startswith("{")]
    if not lines:
        return NamespaceRun(
            {"error": "no result line", "stdout": out[-2000:]}, proc.returncode, err
        )
    result: dict[str, Any] = json.loads(lines[-1])
    return NamespaceRun(result, proc.returncode, err)


def namespace_fixture_run(module: str, scenarios: list[str], timeout_s: float) -> dict[str, Any]:
    """What a module-scoped fixture of browser tests returns: the scenario run's result, with
    the tail of its stderr when it failed. A missing browser fails, never skips: `make
    test` installs it, and a skip would hide it."""
    missing = chromium_missing()
    if missing is not None:
        pytest.fail(missing)
    done = run_in_namespace(scenarios, timeout_s=timeout_s, module=module)
    result = done.result
    if "error" in result:
        # Shown with each failing test: what stopped the run, and what the server said.
        result["stderr_tail"] = done.stderr.splitlines()[-20:]
    return result


def phase(run: dict[str, Any], name: str) -> dict[str, Any]:
    """The phase's measurements, or a failure explaining why there are none."""
    if name not in run:
        pytest.fail(f"phase {name} did not complete:\n{json.dumps(run, indent=1)}")
    found: dict[str, Any] = run[name]
    return found


# ---- inside the namespace: the server --------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def token(user: str, role: Role, court: str, name: str, scope: str | None = None) -> str:
    """A test token; `scope` names a witness's conference ("conference:<id>")."""
    return issue_token(
        SECRET,
        user=user,
        role=role,
        court=court,
        name=name,
        ttl_s=600,
        now=time.time(),
        scope=scope,
    )


class ServerProcess:
    """`python -m commandcenter serve` on embedded defaults, with a private data directory,
    the test secret and media candidates pinned to 127.0.0.1."""

    COMMAND = (sys.executable, "-m", "commandcenter", "serve")

    def __init__(self, workdir: Path, extra_env: Mapping[str, str] | None = None) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = workdir / "server.log"
        env = {k: v for k, v in os.environ.items() if not k.startswith("COMMANDCENTER_")}
        env |= {
            "COMMANDCENTER_SERVER_DATA_DIR": str(workdir / "var"),
            "COMMANDCENTER_RECORDER_SQLITE_PATH": str(workdir / "trace.sqlite3"),
            "COMMANDCENTER_AUTH_JWT_SECRET": SECRET,
            # The namespace has nothing but lo, which aioice leaves out unless told.
            "COMMANDCENTER_MEDIA_ICE_ADDRESSES": "127.0.0.1",
            **(extra_env or {}),
        }
        self._log = self.log_path.open("wb")
        self.proc = subprocess.Popen(
            [*self.COMMAND, "--host", "127.0.0.1", "--port", str(self.port)],
            cwd=workdir,
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )

    async def wait_healthy(self) -> None:
        async def healthy() -> bool:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}")
            try:
                async with http.get(f"{self.base}/healthz") as resp:
                    if resp.status != 200:
                        return False
                    # The media worker processes start while the server serves: up, too.
                    workers = (await resp.json()).get("media_workers", [])
                    return all(worker["up"] for worker in workers)
            except aiohttp.ClientConnectionError:
                return False

        async with aiohttp.ClientSession() as http:
            await until(healthy, within=SERVER_START_S, what="server healthy")

    async def check_app(self) -> None:
        """Fail at once, and say why, if the server does not serve the web client. (Chromium's
        local network access checks forbid a page from anywhere else, even a fulfilled route,
        to open a WebSocket to 127.0.0.1: the page must come from the server.)"""
        async with aiohttp.ClientSession() as http, http.get(self.base + APP_PATH) as resp:
            if resp.status != 200:
                raise RuntimeError(f"GET {APP_PATH}: {resp.status}; the server must serve /app/")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=SERVER_STOP_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()

    def log_tail(self) -> list[str]:
        lines = self.log_path.read_text(errors="replace").splitlines()
        return lines[-LOG_TAIL_LINES:]


# ---- inside the namespace: the browser -------------------------------------------------


Drive = Callable[[Browser, str, dict[str, Any]], Awaitable[None]]


async def drive_with_server(server: ServerProcess, drive: Drive) -> dict[str, Any]:
    """Run `drive(browser, base URL, result)` in a fresh Chromium against `server` (started,
    waited for, stopped here) and return `result`: what the drive put in it, or the error
    that stopped it with its traceback and the server's log tail, and the time it took."""
    result: dict[str, Any] = {}
    started = time.monotonic()
    try:
        await server.wait_healthy()
        async with async_playwright() as playwright:
            browser = await launch(playwright)
            try:
                await drive(browser, server.base, result)
            finally:
                await browser.close()
    except Exception as exc:
        result["error"] = f"{type(exc).__name__}: {exc}"
        result["traceback"] = traceback.format_exc(limit=6)
    finally:
        server.stop()
        if "error" in result:
            result["server_log_tail"] = server.log_tail()
    result["elapsed_s"] = round(time.monotonic() - started, 2)
    return result


async def launch(playwright: Playwright) -> Browser:
    return await playwright.chromium.launch(
        executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS), timeout=20_000
    )


@dataclasses.dataclass
class UserPage:
    """One user's page of the web client, with what its console said."""

    user: str
    context: BrowserContext
    page: Page
    console: list[str] = dataclasses.field(default_factory=list)

    async def state(self) -> dict[str, Any]:
        result: dict[str, Any] = await self.page.evaluate("window.cc.state()")
        return result

    async def inbound(self) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self.page.evaluate("window.cc.inboundStats()")
        return result

    async def close(self) -> None:
        await self.context.close()


async def open_page(browser: Browser, base: str, *, user: str, role: Role, court: str) -> UserPage:
    """A fresh browser context (its own storage) with the client signed in as `user`."""
    context = await browser.new_context()
    page = await context.new_page()
    up = UserPage(user, context, page)
    page.on("console", lambda m: up.console.append(f"{m.type}: {m.text}"))
    page.on("pageerror", lambda e: up.console.append(f"pageerror: {e}"))
    name = f"{role.value} {user}"
    # The token in the fragment, as a link to the client carries it.
    await page.goto(f"{base}{APP_PATH}#token={token(user, role, court, name)}", timeout=10_000)
    await until(lambda: connected(up), within=10, what=f"{user} signed in")
    return up


async def connected(page: UserPage) -> bool:
    state = await page.state()
    return bool(state["connected"])


# ---- waiting ------------------------------------------------------------------------------


async def until(
    probe: Callable[[], Awaitable[T | None]],
    *,
    within: float,
    what: str,
    every: float = 0.05,
) -> T:
    """Poll `probe` until it returns something truthy and return that; fail after `within` s.
    (tests.polling.wait_until polls every 10 ms, too often for a round trip into a page.)"""
    deadline = time.monotonic() + within
    while True:
        value = await probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        await asyncio.sleep(every)
