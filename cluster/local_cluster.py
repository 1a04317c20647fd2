"""A real Kubernetes cluster on this machine: ``make cluster-up``, ``cluster-down``, ``cluster-status``.

Layers, each on the one before: ``control-plane`` (etcd, kube-apiserver, controller-manager,
scheduler; control_plane.py), ``node`` (containerd, a kubelet, kube-proxy and CoreDNS; node_runtime.py, cluster_dns.py),
``knative`` (Knative Serving as pods and Traefik as its ingress; knative_serving.py) and ``kserve``
(KServe's controller manager and webhooks; kserve_controller.py). ``KUBETFX_CLUSTER_LAYERS`` picks how far up to go
(default: all). Everything runs in the cluster's own network namespace (network.py) with its state in
``kubetfx-local/cluster`` (``KUBETFX_CLUSTER_DIR``): certificates, etcd's data, logs, PID files and
``admin.kubeconfig``, whose server is 127.0.0.1 on the host. Binaries are built from the versions pinned
in ``cluster/*/go.mod`` once per machine (gobuild.py). A second ``up`` starts only what is not
running; ``down`` stops each process by its own PID, newest layer first, then removes the namespace.
"""

import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import control_plane  # noqa: E402
import gobuild  # noqa: E402
import network  # noqa: E402
from pki import Pki  # noqa: E402
from processes import Processes  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KUBERNETES_MODULE = "k8s.io/kubernetes"
LAYERS = ("control-plane", "node", "knative", "kserve")


def state_dir() -> str:
    return os.path.abspath(os.environ.get("KUBETFX_CLUSTER_DIR") or os.path.join(REPO, "kubetfx-local", "cluster"))


def netns_name() -> str:
    return os.environ.get("KUBETFX_CLUSTER_NETNS") or "kubetfx-cluster"


def layers() -> tuple[str, ...]:
    """The layers to bring up: ``KUBETFX_CLUSTER_LAYERS`` names the top one (default: all of them)."""
    top = os.environ.get("KUBETFX_CLUSTER_LAYERS", "").strip() or LAYERS[-1]
    if top not in LAYERS:
        raise SystemExit(f"cluster: KUBETFX_CLUSTER_LAYERS={top!r} is not a layer; use one of {', '.join(LAYERS)}")
    return LAYERS[:LAYERS.index(top) + 1]


def kubeconfig_path() -> str:
    return os.path.join(state_dir(), "admin.kubeconfig")


def processes() -> Processes:
    return Processes(state_dir(), netns_name())


def pki() -> Pki:
    return Pki(os.path.join(state_dir(), "pki"))


def kubernetes_ldflags() -> str:
    """Stamp the release into the binaries (else they report v0.0.0-master and kubectl warns of skew)."""
    version = gobuild.required_version("kubernetes", KUBERNETES_MODULE)
    major, minor = version.lstrip("v").split(".")[:2]
    base = "-X k8s.io/component-base/version"
    return " ".join(f"{base}.{key}={value}" for key, value in (
        ("gitVersion", version), ("gitMajor", major), ("gitMinor", minor), ("gitTreeState", "clean")))


def build(wanted: tuple[str, ...]) -> dict:
    """The bin dir of every Go tools module the wanted layers need (built once per machine)."""
    bins = {"kubernetes": gobuild.build("kubernetes", kubernetes_ldflags())}
    if "node" in wanted:
        bins["node"] = gobuild.build("node")
        bins["dns"] = gobuild.build("dns")
    if "knative" in wanted:
        bins["knative"] = gobuild.build("knative")
        bins["ingress"] = gobuild.build("ingress")
    if "kserve" in wanted:
        bins["kserve"] = gobuild.build("kserve")
    return bins


def _layer_modules(wanted: tuple[str, ...]) -> list:
    modules = []
    if "node" in wanted:
        import node_runtime

        modules.append(node_runtime)
    if "knative" in wanted:
        import knative_serving

        modules.append(knative_serving)
    if "kserve" in wanted:
        import kserve_controller

        modules.append(kserve_controller)
    return modules


def up(log=print) -> dict:
    """Start whatever of the wanted layers is not running; return timings. A no-op when all of it runs."""
    wanted = layers()
    procs, certificates = processes(), pki()
    names = list(control_plane.NAMES) + [n for m in _layer_modules(wanted) for n in m.NAMES]
    if all(procs.running(name) for name in names) and control_plane.ready(certificates):
        log(f"cluster: already up ({', '.join(wanted)}) at {control_plane.server_url()}; KUBECONFIG={kubeconfig_path()}")
        return {"already_up": True}
    busy = control_plane.host_ports_busy(procs)
    if busy:
        raise SystemExit(f"cluster: port {busy[0]} on 127.0.0.1 is in use by another program; the API server's "
                         "forwarder needs it (stop that program, or `make cluster-down` if it is an old cluster)")
    bins = build(wanted)
    started = time.monotonic()
    os.makedirs(state_dir(), exist_ok=True)
    network.ensure(netns_name())
    certificates.ensure()
    control_plane.kubeconfig_for(certificates, state_dir(), "admin")
    timings = {"layers": list(wanted), **control_plane.start(procs, bins["kubernetes"], certificates, state_dir())}
    timings["control_plane_s"] = round(time.monotonic() - started, 2)
    for module in _layer_modules(wanted):
        layer_started = time.monotonic()
        timings.update(module.start(procs, bins, certificates, state_dir(), log=log))
        timings[f"{module.LAYER}_s"] = round(time.monotonic() - layer_started, 2)
    timings["up_s"] = round(time.monotonic() - started, 2)
    log(f"cluster: {', '.join(wanted)} up in {timings['up_s']:.1f} s (API server ready after "
        f"{timings['apiserver_ready_s']:.1f} s) at {control_plane.server_url()}")
    log(f"cluster: KUBECONFIG={kubeconfig_path()}")
    return timings


def down(log=print, keep_state: bool = False) -> None:
    """Stop every process by its PID, newest layer first; remove the namespace and (unless kept) the state."""
    procs = processes()
    for module in reversed(_layer_modules(LAYERS)):
        module.stop(procs, state_dir(), log=log)
    for name in reversed(control_plane.NAMES + control_plane.FORWARDERS):
        if procs.stop(name):
            log(f"cluster: stopped {name}")
    network.remove(netns_name())
    if not keep_state and os.path.isdir(state_dir()):
        shutil.rmtree(state_dir(), ignore_errors=True)
        log(f"cluster: removed {state_dir()}")


def status(log=print) -> int:
    """One line per process (PID, memory) and the API server's readiness; exit 0 only when all of it runs."""
    procs, ok = processes(), True
    names = list(control_plane.NAMES) + [n for m in _layer_modules(layers()) for n in m.NAMES]
    for name in names:
        pid = procs.running(name)
        ok &= bool(pid)
        log(f"  {name:<24} {'running, pid ' + str(pid) + f', {procs.rss_mb(name):.0f} MB' if pid else 'not running'}")
    ready = control_plane.ready(pki())
    log(f"  {'API server':<24} {control_plane.server_url() + ' ready' if ready else 'not ready'}")
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
        for name, directory in build(layers()).items():
            print(f"{name}: {directory}")
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
