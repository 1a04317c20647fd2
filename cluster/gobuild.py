"""Build the Go tools a module of ours pins (its go.mod `tool` lines) once per machine, into a cache.

Each tools module (``cluster/<name>/go.mod`` + ``go.sum``) pins one upstream release. Its
binaries land in ``<cache>/<name>-<key>/bin``, where the key hashes go.mod, go.sum, the Go
version and the build flags: the same pins are never built twice on one machine, and a
changed pin builds into a new folder. A lock file keeps two builds of one key from racing.
"""

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time

CLUSTER_DIR = os.path.dirname(os.path.abspath(__file__))


def cache_root() -> str:
    """``$KUBETFX_CACHE`` or ``~/.cache/kubetfx``: shared by every clone on this machine, never committed."""
    return os.environ.get("KUBETFX_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "kubetfx")


def go_version() -> str:
    result = subprocess.run(["go", "env", "GOVERSION"], capture_output=True, text=True, env=_go_env())
    if result.returncode != 0:
        raise SystemExit("cluster: the Go toolchain is missing (`go` not on PATH); it builds the local cluster")
    return result.stdout.strip()


def _go_env() -> dict:
    # GOTOOLCHAIN=local: build with this machine's Go, never fetch another one behind our back.
    return {**os.environ, "GOTOOLCHAIN": "local", "GOFLAGS": "-mod=readonly"}


def module_dir(name: str) -> str:
    return os.path.join(CLUSTER_DIR, name)


def required_version(name: str, module: str) -> str:
    """The version ``cluster/<name>/go.mod`` pins for ``module`` (go.mod is the one place versions live)."""
    with open(os.path.join(module_dir(name), "go.mod"), encoding="utf-8") as handle:
        for line in handle:
            parts = line.split()
            if parts[:1] == ["require"] and len(parts) == 3 and parts[1] == module:
                return parts[2]
            if len(parts) >= 2 and parts[0] == module and parts[1].startswith("v"):
                return parts[1]
    raise KeyError(f"cluster/{name}/go.mod does not require {module}")


# Binaries renamed after the build: Go names a module-root main package by its path ("server").
RENAMES = {"go.etcd.io/etcd/server/v3": "etcd", "github.com/kserve/kserve/cmd/manager": "kserve-manager",
           "github.com/kserve/kserve/cmd/agent": "kserve-agent"}


def _go_exec_name(package: str) -> str:
    """Go's name for a main package's binary: its last path element, or the one before a /vN suffix."""
    parts = package.rstrip("/").split("/")
    return parts[-2] if len(parts) > 1 and re.fullmatch(r"v[0-9]+", parts[-1]) else parts[-1]


def _exec_name(package: str) -> str:
    return RENAMES.get(package) or _go_exec_name(package)


def tool_packages(name: str) -> list[str]:
    """The main packages of a tools module's `tool` lines."""
    packages, inside = [], False
    with open(os.path.join(module_dir(name), "go.mod"), encoding="utf-8") as handle:
        for line in handle:
            words = line.split("//")[0].split()
            if words[:2] == ["tool", "("]:
                inside = True
            elif inside and words[:1] == [")"]:
                inside = False
            elif inside and words:
                packages.append(words[0])
            elif words[:1] == ["tool"] and len(words) == 2:
                packages.append(words[1])
    return packages


def tools(name: str) -> list[str]:
    """The binaries a tools module builds."""
    return [_exec_name(package) for package in tool_packages(name)]


# Modules whose binaries go into one-file images (no libc there): built without cgo, i.e. static.
STATIC = ("kserve", "knative", "dns")


def _build_env(name: str) -> dict:
    return {"CGO_ENABLED": "0"} if name in STATIC else {}


def _key(name: str, ldflags: str) -> str:
    digest = hashlib.sha256()
    for file_name in ("go.mod", "go.sum"):
        with open(os.path.join(module_dir(name), file_name), "rb") as handle:
            digest.update(handle.read())
    digest.update(go_version().encode())
    digest.update(ldflags.encode())
    digest.update(json.dumps(_build_env(name), sort_keys=True).encode())
    return digest.hexdigest()[:12]


def bin_dir(name: str, ldflags: str = "") -> str:
    """Where this module's binaries are (built or not)."""
    return os.path.join(cache_root(), f"{name}-{_key(name, ldflags)}", "bin")


def built(name: str, ldflags: str = "") -> bool:
    directory = bin_dir(name, ldflags)
    return all(os.access(os.path.join(directory, tool), os.X_OK) for tool in tools(name))


def build(name: str, ldflags: str = "", log=print) -> str:
    """Build every tool of ``cluster/<name>`` unless this machine already has them; return the bin dir."""
    directory = bin_dir(name, ldflags)
    if built(name, ldflags):
        return directory
    folder = os.path.dirname(directory)
    os.makedirs(cache_root(), exist_ok=True)
    with open(folder + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another build of the same key: wait for it, then reuse it
        if built(name, ldflags):
            return directory
        temp = folder + ".tmp"
        shutil.rmtree(temp, ignore_errors=True)
        os.makedirs(os.path.join(temp, "bin"))
        log(f"cluster: building {', '.join(tools(name))} from cluster/{name}/go.mod ({go_version()}); "
            "the first build on a machine takes minutes, later ones reuse it")
        started = time.monotonic()
        command = ["go", "build", "-trimpath", "-ldflags", f"-s -w {ldflags}".strip(),
                   "-o", os.path.join(temp, "bin") + os.sep, "tool"]
        nice = os.environ.get("KUBETFX_BUILD_NICE", "10")
        result = subprocess.run(["nice", "-n", nice, *command], cwd=module_dir(name),
                                env={**_go_env(), **_build_env(name)})
        if result.returncode != 0:
            shutil.rmtree(temp, ignore_errors=True)
            raise SystemExit(f"cluster: building cluster/{name} failed (go build exit {result.returncode}); "
                             "the output above says why")
        seconds = time.monotonic() - started
        for package in tool_packages(name):
            if package in RENAMES:
                os.rename(os.path.join(temp, "bin", _go_exec_name(package)),
                          os.path.join(temp, "bin", RENAMES[package]))
        with open(os.path.join(temp, "build.json"), "w", encoding="utf-8") as handle:
            json.dump({"module": name, "go": go_version(), "seconds": round(seconds, 1), "tools": tools(name),
                       "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, handle, indent=2)
        shutil.rmtree(folder, ignore_errors=True)
        os.rename(temp, folder)
        log(f"cluster: built cluster/{name} in {seconds:.0f} s into {directory}")
    return directory


if __name__ == "__main__":
    for module_name in sys.argv[1:]:
        print(build(module_name))
