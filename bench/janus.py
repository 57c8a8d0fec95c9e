"""Janus (Debian package `janus` 1.1.2) for `bench.relay`: installing it when missing, and
running one instance with a configuration of its own.

The instance reads nothing from /etc/janus: `write_config` writes a configuration folder
(in a temporary directory) that loads only the VideoRoom plugin and the HTTP transport,
binds that transport to 127.0.0.1, turns the admin API off (with a random admin secret all
the same), loads no other transport, logger or event handler, and gathers ICE candidates on
`ice_address` only. Janus never gathers candidates on loopback interfaces, which is why
`bench.relay` runs inside a network namespace with a veth pair carrying a test address.
`janus_server` returns a `ServerProcess`, stopped (SIGINT, then SIGKILL) when the benchmark
leaves it.
"""

from __future__ import annotations

import glob
import os
import secrets
import shutil
import subprocess
from pathlib import Path
from typing import Final

from bench._common import BenchError, ServerProcess

JANUS_BIN: Final = "/usr/bin/janus"
JANUS_PACKAGE: Final = "janus"
_KEEP_PLUGINS: Final = frozenset({"libjanus_videoroom.so"})
_KEEP_TRANSPORTS: Final = frozenset({"libjanus_http.so"})


def janus_available() -> bool:
    return os.access(JANUS_BIN, os.X_OK)


def ensure_janus(log: Path | None = None) -> None:
    """Install the `janus` package with apt-get when /usr/bin/janus is missing (root only).

    Run it outside the benchmark's network namespace: apt needs the network."""
    if janus_available():
        return
    if os.geteuid() != 0:
        raise BenchError(f"{JANUS_BIN} is missing; install it: apt-get install -y janus")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "--no-install-recommends", JANUS_PACKAGE]
    out = subprocess.DEVNULL if log is None else log.open("ab")
    try:
        if subprocess.run(install, env=env, stdout=out, stderr=out).returncode != 0:
            # A fresh machine may have no package lists yet.
            subprocess.run(["apt-get", "update"], env=env, stdout=out, stderr=out, check=False)
            subprocess.run(install, env=env, stdout=out, stderr=out, check=False)
    finally:
        if log is not None and not isinstance(out, int):
            out.close()
    if not janus_available():
        raise BenchError(f"apt-get could not install {JANUS_PACKAGE}")


def _module_dir(kind: str) -> Path:
    """Where the package keeps Janus's `kind` (plugins, transports, ...) modules."""
    found = sorted(glob.glob(f"/usr/lib/*/janus/{kind}")) + sorted(
        glob.glob(f"/usr/lib/janus/{kind}")
    )
    if not found:
        raise BenchError(f"no Janus {kind} folder under /usr/lib")
    return Path(found[0])


def _all_but(folder: Path, keep: frozenset[str]) -> str:
    names = sorted(p.name for p in folder.glob("*.so") if p.name not in keep)
    return ",".join(names)


def write_config(folder: Path, *, http_port: int, ice_address: str, event_loops: int) -> Path:
    """Write Janus's configuration into `folder`; returns the main file's path."""
    folder.mkdir(parents=True, exist_ok=True)
    plugins, transports = _module_dir("plugins"), _module_dir("transports")
    events, loggers = _module_dir("events"), _module_dir("loggers")
    loops = f"\n\tevent_loops = {event_loops}" if event_loops > 0 else ""
    main = folder / "janus.jcfg"
    main.write_text(
        f"""general: {{
\tconfigs_folder = "{folder}"
\tplugins_folder = "{plugins}"
\ttransports_folder = "{transports}"
\tevents_folder = "{events}"
\tloggers_folder = "{loggers}"
\tdebug_level = 3
\tadmin_secret = "{secrets.token_urlsafe(24)}"
\thide_dependencies = true
\tsession_timeout = 60{loops}
}}
certificates: {{
}}
media: {{
}}
nat: {{
\tnice_debug = false
\tice_enforce_list = "{ice_address}"
\tignore_mdns = true
}}
plugins: {{
\tdisable = "{_all_but(plugins, _KEEP_PLUGINS)}"
}}
transports: {{
\tdisable = "{_all_but(transports, _KEEP_TRANSPORTS)}"
}}
loggers: {{
\tdisable = "{_all_but(loggers, frozenset())}"
}}
events: {{
\tbroadcast = false
\tdisable = "{_all_but(events, frozenset())}"
}}
""",
        encoding="utf-8",
    )
    (folder / "janus.transport.http.jcfg").write_text(
        f"""general: {{
\tjson = "plain"
\tbase_path = "/janus"
\thttp = true
\tport = {http_port}
\tip = "127.0.0.1"
\thttps = false
}}
admin: {{
\tadmin_http = false
\tadmin_https = false
}}
cors: {{
}}
""",
        encoding="utf-8",
    )
    # No predefined rooms: the benchmark creates its own.
    (folder / "janus.plugin.videoroom.jcfg").write_text("general: {\n}\n", encoding="utf-8")
    return main


def janus_server(
    workdir: Path, *, http_port: int, ice_address: str, event_loops: int = 0
) -> ServerProcess:
    """A Janus child process with its configuration under `workdir` (not yet started).

    `event_loops` 0 is Janus's default, one thread per handle; more shares that many loops."""
    if not janus_available():
        raise BenchError(f"{JANUS_BIN} is missing")
    folder = workdir / f"janus-{http_port}"
    if folder.exists():
        shutil.rmtree(folder)
    config = write_config(
        folder, http_port=http_port, ice_address=ice_address, event_loops=event_loops
    )
    argv = [
        JANUS_BIN,
        f"--config={config}",
        f"--configs-folder={folder}",
        # The address in its SDP's connection lines. Set in the file, 1.1.2 ignored it here
        # and probed for a default route, which the namespace does not have.
        f"--interface={ice_address}",
        "--disable-colors",
    ]
    return ServerProcess(
        argv,
        port=http_port,
        env=dict(os.environ),
        log_path=workdir / f"janus-{http_port}.log",
        ready_path="/janus/info",
    )


__all__ = ["JANUS_BIN", "ensure_janus", "janus_available", "janus_server", "write_config"]
