"""The local cluster's background processes: started detached (in the cluster's network namespace or not),
found again by their PID files, stopped by their own PIDs, and waited on with the end of their log on failure.
"""

import os
import signal
import subprocess
import time
import urllib.request

READY_TIMEOUT_S = 120.0


class Processes:
    """PID files under ``<state>/run``, logs under ``<state>/logs``."""

    def __init__(self, state_dir: str, netns: str = ""):
        self.state_dir = state_dir
        self.netns = netns  # processes started with inside=True run in this network namespace

    def _pid_file(self, name: str) -> str:
        return os.path.join(self.state_dir, "run", f"{name}.pid")

    def log_path(self, name: str) -> str:
        return os.path.join(self.state_dir, "logs", f"{name}.log")

    def running(self, name: str) -> int | None:
        """The PID of our process ``name`` if it is alive and still the binary we started (not a reused PID)."""
        try:
            with open(self._pid_file(name), encoding="utf-8") as handle:
                pid, binary = handle.read().split("\n")[:2]
            with open(f"/proc/{int(pid)}/cmdline", "rb") as handle:
                argv = handle.read().split(b"\0")
        except (OSError, ValueError):
            return None
        argv0 = argv[0].decode()
        # Between fork and exec the command line is empty or still nsenter's: ask again shortly.
        return int(pid) if argv0 in (binary, "", "nsenter") else None

    def start(self, name: str, argv: list[str], env: dict | None = None, inside: bool = True) -> int:
        """Start ``argv`` detached (a no-op if it runs); ``inside``: in the cluster's network namespace."""
        pid = self.running(name)
        if pid:
            return pid
        for directory in ("run", "logs"):
            os.makedirs(os.path.join(self.state_dir, directory), exist_ok=True)
        command = argv
        if inside and self.netns:  # nsenter, not `ip netns exec`: that remounts /sys and hides the cgroup mounts
            command = ["nsenter", f"--net=/run/netns/{self.netns}", "--", *argv]
        with open(self.log_path(name), "ab") as log:
            process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                       start_new_session=True, env={**os.environ, **(env or {})},
                                       cwd=self.state_dir)
        with open(self._pid_file(name), "w", encoding="utf-8") as handle:
            handle.write(f"{process.pid}\n{argv[0]}\n")
        return process.pid

    def stop(self, name: str, timeout_s: float = 15.0) -> bool:
        """SIGTERM our process ``name`` (SIGKILL after ``timeout_s``); True if one was running."""
        pid = self.running(name)
        if not pid:
            return False
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline and self.running(name):
            time.sleep(0.1)
        if self.running(name):
            os.kill(pid, signal.SIGKILL)
            while self.running(name):
                time.sleep(0.05)
        os.remove(self._pid_file(name))
        return True

    def log_tail(self, name: str, lines: int = 15) -> str:
        try:
            with open(self.log_path(name), encoding="utf-8", errors="replace") as handle:
                return "".join(handle.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait(self, what: str, check, name: str, timeout_s: float = READY_TIMEOUT_S) -> float:
        """Poll ``check()`` until true; SystemExit with the log's end if ``name`` dies or time runs out."""
        started = time.monotonic()
        while time.monotonic() - started < timeout_s:
            if check():
                return time.monotonic() - started
            if not self.running(name) and (time.sleep(0.5) or not self.running(name)):
                raise SystemExit(f"cluster: {name} exited before {what}; its log ends:\n{self.log_tail(name)}")
            time.sleep(0.2)
        raise SystemExit(f"cluster: {name} not {what} after {timeout_s:.0f} s; its log ends:\n{self.log_tail(name)}")

    def rss_mb(self, name: str) -> float | None:
        pid = self.running(name)
        if not pid:
            return None
        with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return None


def http_ok(url: str, context=None) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2, context=context) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False
