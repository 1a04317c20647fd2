"""A real Kubernetes control plane on 127.0.0.1: ``make cluster-up``, ``cluster-down``, ``cluster-status``.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler, built from the release pinned in
``cluster/kubernetes/go.mod`` (see gobuild.py), run as background processes with their state in
``kubetfx-local/cluster`` (``KUBETFX_CLUSTER_DIR``): certificates, etcd's data, logs, PID files and
``admin.kubeconfig``. Every socket is on 127.0.0.1; the service CIDR is only a setting. RBAC is on.
A second ``up`` starts only what is not running; ``down`` stops each process by its own PID.
"""

import argparse
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import gobuild  # noqa: E402
from pki import Pki  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KUBERNETES_MODULE = "k8s.io/kubernetes"
SERVICE_CIDR = "10.96.0.0/16"
# Ports, all on 127.0.0.1 (away from the well-known ones so a cluster of yours can run beside it).
PORTS = {"etcd": 12379, "etcd-peer": 12380, "apiserver": 16443, "controller-manager": 20257, "scheduler": 20259}
READY_TIMEOUT_S = 120.0


def state_dir() -> str:
    return os.path.abspath(os.environ.get("KUBETFX_CLUSTER_DIR") or os.path.join(REPO, "kubetfx-local", "cluster"))


def kubeconfig_path() -> str:
    return os.path.join(state_dir(), "admin.kubeconfig")


def server_url() -> str:
    return f"https://127.0.0.1:{PORTS['apiserver']}"


def kubernetes_version() -> str:
    return gobuild.required_version("kubernetes", KUBERNETES_MODULE)


def kubernetes_ldflags() -> str:
    """Stamp the release into the binaries (else they report v0.0.0-master and kubectl warns of skew)."""
    version = kubernetes_version()
    major, minor = version.lstrip("v").split(".")[:2]
    base = "-X k8s.io/component-base/version"
    return " ".join(f"{base}.{key}={value}" for key, value in (
        ("gitVersion", version), ("gitMajor", major), ("gitMinor", minor), ("gitTreeState", "clean")))


def kubernetes_bin(build: bool = True) -> str:
    if build:
        return gobuild.build("kubernetes", kubernetes_ldflags())
    return gobuild.bin_dir("kubernetes", kubernetes_ldflags())


# ---------------------------------------------------------------------------------------------- processes


def _pid_file(name: str) -> str:
    return os.path.join(state_dir(), "run", f"{name}.pid")


def running_pid(name: str) -> int | None:
    """The PID of our process ``name`` if it is alive and still the binary we started (not a reused PID)."""
    try:
        with open(_pid_file(name), encoding="utf-8") as handle:
            pid, binary = handle.read().split("\n")[:2]
        with open(f"/proc/{int(pid)}/cmdline", "rb") as handle:
            argv0 = handle.read().split(b"\0")[0].decode()
    except (OSError, ValueError):
        return None
    # An empty command line: the process is between fork and exec (or exiting); ask again shortly.
    return int(pid) if argv0 in (binary, "") else None


def _start(name: str, argv: list[str], env: dict | None = None) -> int:
    pid = running_pid(name)
    if pid:
        return pid
    for directory in ("run", "logs"):
        os.makedirs(os.path.join(state_dir(), directory), exist_ok=True)
    log = open(os.path.join(state_dir(), "logs", f"{name}.log"), "ab")
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               start_new_session=True, env={**os.environ, **(env or {})}, cwd=state_dir())
    log.close()
    with open(_pid_file(name), "w", encoding="utf-8") as handle:
        handle.write(f"{process.pid}\n{argv[0]}\n")
    return process.pid


def stop(name: str, timeout_s: float = 15.0) -> bool:
    """SIGTERM our process ``name`` (SIGKILL after ``timeout_s``); True if one was running."""
    pid = running_pid(name)
    if not pid:
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and running_pid(name):
        time.sleep(0.1)
    if running_pid(name):
        os.kill(pid, signal.SIGKILL)
        while running_pid(name):
            time.sleep(0.05)
    os.remove(_pid_file(name))
    return True


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _wait(what: str, check, name: str, timeout_s: float = READY_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if check():
            return
        if not running_pid(name) and (time.sleep(0.5) or not running_pid(name)):
            tail = _log_tail(name)
            raise SystemExit(f"cluster: {name} exited before {what}; its log ends:\n{tail}")
        time.sleep(0.2)
    raise SystemExit(f"cluster: {name} not {what} after {timeout_s:.0f} s; its log ends:\n{_log_tail(name)}")


def _log_tail(name: str, lines: int = 15) -> str:
    try:
        with open(os.path.join(state_dir(), "logs", f"{name}.log"), encoding="utf-8", errors="replace") as handle:
            return "".join(handle.readlines()[-lines:])
    except OSError:
        return "(no log)"


def _https_ok(url: str, pki: Pki) -> bool:
    context = ssl.create_default_context(cafile=pki.path("ca.crt"))
    context.load_cert_chain(pki.path("admin.crt"), pki.path("admin.key"))
    try:
        with urllib.request.urlopen(url, context=context, timeout=2) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as response:
            return response.status == 200
    except (OSError, ValueError):
        return False


# ---------------------------------------------------------------------------------------------- the control plane


def _etcd_argv(bin_dir: str) -> list[str]:
    client, peer = f"http://127.0.0.1:{PORTS['etcd']}", f"http://127.0.0.1:{PORTS['etcd-peer']}"
    return [os.path.join(bin_dir, "etcd"), "--name=local", f"--data-dir={os.path.join(state_dir(), 'etcd')}",
            f"--listen-client-urls={client}", f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}", f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=local={peer}", "--unsafe-no-fsync", "--log-level=warn"]


def _apiserver_argv(bin_dir: str, pki: Pki) -> list[str]:
    p = pki.path
    return [os.path.join(bin_dir, "kube-apiserver"),
            "--bind-address=127.0.0.1", "--advertise-address=127.0.0.1", f"--secure-port={PORTS['apiserver']}",
            f"--etcd-servers=http://127.0.0.1:{PORTS['etcd']}", "--endpoint-reconciler-type=none",
            f"--service-cluster-ip-range={SERVICE_CIDR}", "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction", "--allow-privileged=true",
            f"--client-ca-file={p('ca.crt')}", f"--tls-cert-file={p('apiserver.crt')}",
            f"--tls-private-key-file={p('apiserver.key')}",
            "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
            f"--service-account-key-file={p('sa.pub')}", f"--service-account-signing-key-file={p('sa.key')}",
            f"--kubelet-client-certificate={p('apiserver-kubelet-client.crt')}",
            f"--kubelet-client-key={p('apiserver-kubelet-client.key')}",
            f"--kubelet-certificate-authority={p('ca.crt')}", "--kubelet-preferred-address-types=InternalIP",
            "--enable-aggregator-routing=true", "--profiling=false", "--event-ttl=30m"]


def _kubeconfig_for(pki: Pki, user: str) -> str:
    path = os.path.join(state_dir(), f"{user}.kubeconfig")
    if not os.path.exists(path):
        pki.kubeconfig(path, server_url(), user)
    return path


def _controller_manager_argv(bin_dir: str, pki: Pki) -> list[str]:
    config = _kubeconfig_for(pki, "controller-manager")
    return [os.path.join(bin_dir, "kube-controller-manager"), f"--kubeconfig={config}",
            f"--authentication-kubeconfig={config}", f"--authorization-kubeconfig={config}",
            "--bind-address=127.0.0.1", f"--secure-port={PORTS['controller-manager']}", "--leader-elect=false",
            f"--tls-cert-file={pki.path('controller-manager-serving.crt')}",
            f"--tls-private-key-file={pki.path('controller-manager-serving.key')}",
            f"--service-account-private-key-file={pki.path('sa.key')}", f"--root-ca-file={pki.path('ca.crt')}",
            "--use-service-account-credentials=true", f"--cluster-signing-cert-file={pki.path('ca.crt')}",
            f"--cluster-signing-key-file={pki.path('ca.key')}", f"--service-cluster-ip-range={SERVICE_CIDR}"]


def _scheduler_argv(bin_dir: str, pki: Pki) -> list[str]:
    config = _kubeconfig_for(pki, "scheduler")
    return [os.path.join(bin_dir, "kube-scheduler"), f"--kubeconfig={config}",
            f"--authentication-kubeconfig={config}", f"--authorization-kubeconfig={config}",
            "--bind-address=127.0.0.1", f"--secure-port={PORTS['scheduler']}", "--leader-elect=false",
            f"--tls-cert-file={pki.path('scheduler-serving.crt')}",
            f"--tls-private-key-file={pki.path('scheduler-serving.key')}"]


CONTROL_PLANE = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")


def up(log=print) -> dict:
    """Start whatever of the control plane is not running; return timings. A no-op when all of it runs."""
    if all(running_pid(name) for name in CONTROL_PLANE):
        pki = Pki(os.path.join(state_dir(), "pki"))
        if _https_ok(server_url() + "/readyz", pki):
            log(f"cluster: already up ({server_url()}); KUBECONFIG={kubeconfig_path()}")
            return {"already_up": True}
    bin_dir = kubernetes_bin(build=True)
    started = time.monotonic()
    os.makedirs(state_dir(), exist_ok=True)
    pki = Pki(os.path.join(state_dir(), "pki"))
    pki.ensure()
    _kubeconfig_for(pki, "admin")
    ports = {"etcd": ("etcd", "etcd-peer"), "kube-apiserver": ("apiserver",),
             "kube-controller-manager": ("controller-manager",), "kube-scheduler": ("scheduler",)}
    for name in CONTROL_PLANE:
        busy = [PORTS[p] for p in ports[name] if not running_pid(name) and not _port_free(PORTS[p])]
        if busy:
            raise SystemExit(f"cluster: port {busy[0]} on 127.0.0.1 is in use by another program; "
                             f"{name} needs it (stop that program, or `make cluster-down` if it is an old cluster)")
    _start("etcd", _etcd_argv(bin_dir))
    _wait("healthy", lambda: _http_ok(f"http://127.0.0.1:{PORTS['etcd']}/health"), "etcd")
    _start("kube-apiserver", _apiserver_argv(bin_dir, pki))
    _wait("ready", lambda: _https_ok(server_url() + "/readyz", pki), "kube-apiserver")
    ready_s = time.monotonic() - started
    _start("kube-controller-manager", _controller_manager_argv(bin_dir, pki))
    _start("kube-scheduler", _scheduler_argv(bin_dir, pki))
    for name in ("kube-controller-manager", "kube-scheduler"):
        port = PORTS["controller-manager" if name == "kube-controller-manager" else "scheduler"]
        _wait("healthy", lambda port=port: _https_ok(f"https://127.0.0.1:{port}/healthz", pki), name)
    total_s = time.monotonic() - started
    log(f"cluster: up in {total_s:.1f} s (API server ready after {ready_s:.1f} s) at {server_url()}")
    log(f"cluster: KUBECONFIG={kubeconfig_path()}")
    return {"already_up": False, "apiserver_ready_s": round(ready_s, 2), "up_s": round(total_s, 2)}


def down(log=print, keep_state: bool = False) -> None:
    """Stop every process by its PID (newest layer first); remove the state unless ``keep_state``."""
    import shutil

    for name in reversed(CONTROL_PLANE):
        if stop(name):
            log(f"cluster: stopped {name}")
    if not keep_state and os.path.isdir(state_dir()):
        shutil.rmtree(state_dir())
        log(f"cluster: removed {state_dir()}")


def rss_mb(name: str) -> float | None:
    pid = running_pid(name)
    if not pid:
        return None
    with open(f"/proc/{pid}/status", encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return None


def status(log=print) -> int:
    """One line per process (PID, memory) and the API server's readiness; exit 0 only when all of it runs."""
    ok = True
    for name in CONTROL_PLANE:
        pid = running_pid(name)
        ok &= bool(pid)
        log(f"  {name:<24} {'running, pid ' + str(pid) + f', {rss_mb(name):.0f} MB' if pid else 'not running'}")
    pki = Pki(os.path.join(state_dir(), "pki"))
    ready = os.path.exists(pki.path("admin.crt")) and _https_ok(server_url() + "/readyz", pki)
    log(f"  {'API server':<24} {server_url() + ' ready' if ready else 'not ready'}")
    if ready:
        log(f"  KUBECONFIG={kubeconfig_path()}")
    return 0 if ok and ready else 1


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="local_cluster", description=__doc__.split("\n")[0])
    parser.add_argument("command", choices=("build", "up", "down", "status", "kubeconfig"))
    parser.add_argument("--keep-state", action="store_true", help="down: keep certificates and etcd's data")
    parser.add_argument("--json", default="", help="up: write the timings to this file")
    args = parser.parse_args(argv)
    if args.command == "build":
        print(kubernetes_bin(build=True))
        return 0
    if args.command == "up":
        timings = up()
        if args.json:
            with open(args.json, "w", encoding="utf-8") as handle:
                json.dump(timings, handle)
        return 0
    if args.command == "down":
        down(keep_state=args.keep_state)
        return 0
    if args.command == "kubeconfig":
        print(kubeconfig_path())
        return 0
    return status()


if __name__ == "__main__":
    sys.exit(main())
