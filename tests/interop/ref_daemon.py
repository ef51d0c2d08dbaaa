#!/usr/bin/env python3
"""Start / stop the CCCC 0.4.32 reference daemon on a given CCCC_HOME (stdlib only).

Run with the interop venv's python (the one that has cccc-pair==0.4.32 installed):

    VENV/bin/python tests/interop/ref_daemon.py run HOME -- CMD [ARGS...]
        start the reference on HOME, run CMD with CCCC_HOME=HOME, shut the daemon
        down via the `shutdown` op, verify every process of it is gone, exit with CMD's rc.
    VENV/bin/python tests/interop/ref_daemon.py start HOME    (prints the daemon pid, leaves it running)
    VENV/bin/python tests/interop/ref_daemon.py stop HOME     (shutdown op + wait until the pid is gone)

The daemon is run in the foreground mode (`python -m cccc.daemon_main run`, i.e. `ccccd run`) in its own
session (setsid) so that any process it spawns can be found (same session id) and reaped.
Its stdout/stderr go to HOME/daemon/ccccd.log, like `ccccd start` does.
Also importable: start_ref_daemon(home) -> RefDaemon, RefDaemon.stop(), ipc_call(home, op, args).
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional


class RefDaemonError(RuntimeError):
    pass


def _endpoint(home: Path) -> tuple:
    """Same discovery rule as the SDK: addr.json (unix/tcp) else daemon/ccccd.sock."""
    try:
        doc = json.loads((home / "daemon" / "ccccd.addr.json").read_text(encoding="utf-8"))
    except Exception:
        doc = None
    if isinstance(doc, dict):
        t = str(doc.get("transport") or "").strip().lower()
        if t == "tcp" and int(doc.get("port") or 0) > 0:
            host = str(doc.get("host") or "").strip() or "127.0.0.1"
            if host in ("localhost", "0.0.0.0") or ":" in host:
                host = "127.0.0.1"
            return ("tcp", (host, int(doc["port"])))
        if t == "unix" and str(doc.get("path") or "").strip():
            return ("unix", str(doc["path"]))
    return ("unix", str(home / "daemon" / "ccccd.sock"))


def ipc_call(home: Path, op: str, args: Optional[Dict[str, Any]] = None, timeout: float = 10.0) -> Dict[str, Any]:
    """One request line -> one response line (raw envelope dict). Raises OSError/ValueError on failure."""
    kind, addr = _endpoint(Path(home))
    s = socket.socket(socket.AF_UNIX if kind == "unix" else socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    try:
        s.connect(addr)
        s.sendall((json.dumps({"v": 1, "op": op, "args": dict(args or {})}) + "\n").encode("utf-8"))
        with s.makefile("rb") as f:
            line = f.readline(8_000_000)
    finally:
        s.close()
    if not line:
        raise ValueError(f"empty response to {op}")
    return json.loads(line.decode("utf-8"))


def pid_alive(pid: int) -> bool:
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie counts as gone.
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    except Exception:
        return True


def session_pids(sid: int) -> List[int]:
    """Live pids whose session id is `sid` (the daemon runs as a session leader)."""
    out = []
    for p in Path("/proc").iterdir():
        if not p.name.isdigit():
            continue
        try:
            fields = (p / "stat").read_text().rsplit(")", 1)[1].split()
        except Exception:
            continue
        # fields[0]=state, [1]=ppid, [2]=pgrp, [3]=session
        if fields[0] != "Z" and int(fields[3]) == sid:
            out.append(int(p.name))
    return sorted(out)


class RefDaemon:
    def __init__(self, home: Path, proc: Optional[subprocess.Popen], pid: int) -> None:
        self.home = home
        self.proc = proc
        self.pid = pid

    def stop(self, timeout: float = 20.0) -> None:
        """Shutdown op, wait for the daemon pid (and its whole session) to be gone."""
        errors = []
        try:
            resp = ipc_call(self.home, "shutdown", {}, timeout=5.0)
            if not resp.get("ok"):
                errors.append(f"shutdown op failed: {resp}")
        except Exception as e:  # daemon already dead / not answering
            errors.append(f"shutdown op error: {e}")
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc is not None:
                if self.proc.poll() is not None and not session_pids(self.pid):
                    break
            elif not pid_alive(self.pid) and not session_pids(self.pid):
                break
            time.sleep(0.1)
        leftovers = [p for p in ([self.pid] if pid_alive(self.pid) else []) + session_pids(self.pid)]
        leftovers = sorted(set(leftovers))
        if leftovers:
            # Only processes we started (the daemon and its own session's children).
            for p in leftovers:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            if self.proc is not None:
                try:
                    self.proc.wait(timeout=5)
                except Exception:
                    pass
            raise RefDaemonError(f"reference daemon did not exit after shutdown; killed {leftovers}; {errors}")
        if self.proc is not None:
            self.proc.wait(timeout=5)
        for name in ("ccccd.sock", "ccccd.addr.json", "ccccd.pid"):
            if (self.home / "daemon" / name).exists():
                raise RefDaemonError(f"daemon exited but left daemon/{name} behind")


def start_ref_daemon(home, python: str = sys.executable, timeout: float = 30.0) -> RefDaemon:
    home = Path(home).expanduser().resolve()
    if str(home) == str(Path.home() / ".cccc"):
        raise RefDaemonError("refusing to use ~/.cccc")
    (home / "daemon").mkdir(parents=True, exist_ok=True)
    try:
        if ipc_call(home, "ping", {}, timeout=1.0).get("ok"):
            raise RefDaemonError(f"a daemon is already answering on {home}")
    except (OSError, ValueError):
        pass
    env = os.environ.copy()
    env["CCCC_HOME"] = str(home)
    log = open(home / "daemon" / "ccccd.log", "ab")
    proc = subprocess.Popen(
        [python, "-m", "cccc.daemon_main", "run"],
        cwd=str(home), env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    log.close()
    d = RefDaemon(home, proc, proc.pid)
    deadline = time.time() + timeout
    last = ""
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RefDaemonError(f"reference daemon exited early rc={proc.returncode}; see {home}/daemon/ccccd.log")
        try:
            r = ipc_call(home, "ping", {}, timeout=1.0)
            if r.get("ok"):
                ver = (r.get("result") or {}).get("version")
                if ver != "0.4.32":
                    d.stop()
                    raise RefDaemonError(f"unexpected reference version {ver!r}")
                return d
        except (OSError, ValueError) as e:
            last = str(e)
        time.sleep(0.1)
    try:
        d.stop()
    finally:
        pass
    raise RefDaemonError(f"reference daemon did not answer ping within {timeout}s ({last})")


def attach_existing(home) -> RefDaemon:
    home = Path(home).expanduser().resolve()
    pid = 0
    try:
        pid = int((home / "daemon" / "ccccd.pid").read_text().strip() or 0)
    except Exception:
        pass
    return RefDaemon(home, None, pid)


def main(argv: List[str]) -> int:
    if len(argv) < 2 or argv[0] not in ("run", "start", "stop"):
        print(__doc__, file=sys.stderr)
        return 2
    cmd, home = argv[0], Path(argv[1]).expanduser().resolve()
    if cmd == "start":
        d = start_ref_daemon(home)
        print(d.pid)
        return 0
    if cmd == "stop":
        attach_existing(home).stop()
        return 0
    rest = argv[2:]
    if rest[:1] == ["--"]:
        rest = rest[1:]
    if not rest:
        print("run: missing command after --", file=sys.stderr)
        return 2
    d = start_ref_daemon(home)
    rc = 1
    try:
        env = os.environ.copy()
        env["CCCC_HOME"] = str(home)
        rc = subprocess.call(rest, env=env)
    finally:
        d.stop()
    return rc


if __name__ == "__main__":
    try:
        sys.exit(main(sys.argv[1:]))
    except RefDaemonError as e:
        print(f"ref_daemon: {e}", file=sys.stderr)
        sys.exit(1)
