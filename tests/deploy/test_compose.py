"""deploy/docker-compose.yml and its files, validated as far as a machine without a Docker engine allows.

- the compose file's structure (PyYAML), and docker-compose's own validation (`docker-compose config`, Debian's
  docker-compose 1.29 with its bundled compose-spec schema) when it is installed;
- the gateway's site file (deploy/docker/site.yaml) with the compose environment: `plume config check`, and the
  sinks' secrets and packages as `plume run` checks them;
- the stack's Mosquitto: its entry point writes the password file, the broker config with the fleet ACL runs on a
  real Mosquitto, and the compose healthcheck command passes against it;
- the stack without Docker: the simulator and the gateway from the compose commands, on loopback, delivering to
  that Mosquitto and to VictoriaMetrics (InfluxDB v2 write API).
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.localservers import loopback_http
from gateway.pipeline.consumers import build_consumers
from gateway.site.load import load_site

from .fleet import Client, free_port, port_open, wait_until
from .helpers import CI, DEPLOY, REPO, need

COMPOSE = DEPLOY / "docker-compose.yml"
SITE = DEPLOY / "docker/site.yaml"
SERVICES = {"mosquitto", "influxdb", "grafana", "gateway", "simulator"}
# Host paths filled by the Grafana work (dashboards and provisioning), referenced here before they exist.
PENDING = {REPO / "grafana/provisioning", REPO / "grafana/dashboards"}
_INTERP = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def compose() -> dict[str, Any]:
    return yaml.safe_load(COMPOSE.read_text())


def interpolate(value: str, env: dict[str, str] | None = None) -> str:
    """Compose's ${VAR:-default} with the defaults (an evaluator's run without a .env file)."""
    env = env or {}
    return _INTERP.sub(lambda m: env.get(m.group(1), m.group(2) or ""), value).replace("$$", "$")


def service_env(name: str) -> dict[str, str]:
    env = compose()["services"][name].get("environment", {})
    return {k: interpolate(str(v)) for k, v in env.items()}


def bind_mounts(service: dict[str, Any]) -> list[tuple[Path, str]]:
    out = []
    for v in service.get("volumes", []):
        source, target = v.split(":")[:2]
        if source.startswith((".", "/")):
            out.append(((DEPLOY / source).resolve(), target))
    return out


# --- the compose file ---------------------------------------------------------------------------------------

def test_services_images_builds_and_healthchecks() -> None:
    c = compose()
    assert set(c["services"]) == SERVICES
    for name, s in c["services"].items():
        assert "image" in s or "build" in s, name
        assert s.get("healthcheck", {}).get("test"), f"{name} has no healthcheck"
        assert s.get("restart") == "unless-stopped", name
        if "build" in s:
            ctx = (DEPLOY / s["build"]["context"]).resolve()
            assert ctx == REPO and (ctx / s["build"]["dockerfile"]).is_file()
    # gateway and simulator: one image, two commands
    g, sim = c["services"]["gateway"], c["services"]["simulator"]
    assert g["build"] == sim["build"] and g["image"] == sim["image"]
    assert g["command"][:2] == ["plume", "run"] and sim["command"][0] == "plume-sim"


def test_every_mounted_host_path_exists_in_the_repository() -> None:
    pending_seen = set()
    for name, s in compose()["services"].items():
        for source, target in bind_mounts(s):
            assert REPO in source.parents, f"{name}: {source} is outside the repository"
            if source in PENDING and not source.exists():
                pending_seen.add(source)
                continue
            assert source.exists(), f"{name}: {source} (-> {target}) does not exist"
        named = [v.split(":")[0] for v in s.get("volumes", []) if not v.startswith((".", "/"))]
        assert set(named) <= set(compose()["volumes"]), name
    # The Grafana folders are mounted where the provisioning expects them, once they exist.
    assert pending_seen <= PENDING
    grafana = dict((t, s) for s, t in bind_mounts(compose()["services"]["grafana"]))
    assert grafana["/etc/grafana/provisioning"] == REPO / "grafana/provisioning"
    assert grafana["/var/lib/grafana/dashboards"] == REPO / "grafana/dashboards"


def test_ports_and_dependencies() -> None:
    c = compose()
    host_ports = []
    for s in c["services"].values():
        for p in s.get("ports", []):
            host, container = p.split(":")
            assert host.isdigit() and container.isdigit()
            host_ports.append(host)
    assert len(host_ports) == len(set(host_ports)) and {"1883", "8086", "3000", "9464"} <= set(host_ports)
    deps = c["services"]["gateway"]["depends_on"]
    assert set(deps) == {"mosquitto", "influxdb", "simulator"}
    assert all(d["condition"] == "service_healthy" for d in deps.values())
    assert c["services"]["grafana"]["depends_on"]["influxdb"]["condition"] == "service_healthy"


def test_influxdb_setup_and_its_v1_mapping() -> None:
    env = service_env("influxdb")
    assert env["DOCKER_INFLUXDB_INIT_MODE"] == "setup"
    for key in ("USERNAME", "PASSWORD", "ORG", "BUCKET", "ADMIN_TOKEN"):
        assert env[f"DOCKER_INFLUXDB_INIT_{key}"], key
    gw = service_env("gateway")
    assert gw["PLUME_INFLUX_TOKEN"] == env["DOCKER_INFLUXDB_INIT_ADMIN_TOKEN"]
    assert gw["PLUME_INFLUX_ORG"] == env["DOCKER_INFLUXDB_INIT_ORG"]
    assert gw["PLUME_INFLUX_BUCKET"] == env["DOCKER_INFLUXDB_INIT_BUCKET"]
    init = (DEPLOY / "docker/influxdb/init-plume.sh").read_text()
    assert "influx v1 dbrp create" in init and "--rp autogen" in init and "--default" in init
    assert "influx v1 auth create" in init
    mounts = {t for _, t in bind_mounts(compose()["services"]["influxdb"])}
    assert "/docker-entrypoint-initdb.d/init-plume.sh" in mounts


def test_docker_compose_validates_the_file() -> None:
    binary = need("docker-compose")  # Debian's 1.29 validates against its bundled compose-spec schema, offline
    proc = subprocess.run([binary, "-f", str(COMPOSE), "config", "-q"], capture_output=True, text=True,
                          cwd=DEPLOY, timeout=60)
    assert proc.returncode == 0, proc.stderr


def test_dockerfile_builds_a_non_root_image_from_the_sources() -> None:
    text = (DEPLOY / "docker/Dockerfile").read_text()
    assert re.findall(r"^FROM (\S+)", text, re.M) == ["python:3.11-slim", "python:3.11-slim"]
    assert re.search(r"^USER plume$", text, re.M)
    for src in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for path in src.split():
            assert (REPO / path).exists(), path
    ignore = [line for line in (DEPLOY / "docker/Dockerfile.dockerignore").read_text().splitlines()
              if line and not line.startswith("#")]
    assert ignore[0] == "**" and {"!pyproject.toml", "!README.md", "!gateway/**", "!firmware-sim/**"} <= set(ignore)


# --- the site file with the compose environment ------------------------------------------------------------------

def test_every_variable_the_site_file_needs_is_set_for_the_gateway() -> None:
    text = SITE.read_text()
    needed = {m.group(1) for m in _INTERP.finditer(text)} | set(re.findall(r"_env: (\w+)", text))
    gw = service_env("gateway")
    required = {m.group(1) for m in _INTERP.finditer(text) if m.group(2) is None} | set(
        re.findall(r"_env: (\w+)", text))
    assert required <= set(gw), f"unset: {required - set(gw)}"
    assert {"PLUME_SIM_HOST", "PLUME_MQTT_HOST", "PLUME_INFLUX_URL"} <= needed & set(gw)
    assert gw["PLUME_SIM_HOST"] == "simulator" and service_env("simulator")["PLUME_SIM_HOST"] == "0.0.0.0"
    assert gw["PLUME_MQTT_PASSWORD"] == service_env("mosquitto")["PLUME_MQTT_PASSWORD"]
    assert load_site_with(gw).id == service_env("mosquitto")["PLUME_SITE_ID"], "MQTT username = site id"


def load_site_with(env: dict[str, str]) -> Any:
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return load_site(SITE)
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def test_the_docker_site_file_passes_plume_config_check_and_the_sink_checks() -> None:
    env = {**os.environ, **service_env("gateway")}
    plume = Path(sys.executable).parent / "plume"
    proc = subprocess.run([str(plume), "config", "check", str(SITE)], env=env, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stdout + proc.stderr
    site = load_site_with(service_env("gateway"))
    old = {k: os.environ.get(k) for k in ("PLUME_MQTT_PASSWORD", "PLUME_INFLUX_TOKEN")}
    os.environ.update({k: service_env("gateway")[k] for k in old})
    try:
        assert len(build_consumers(site)) == 2  # secrets resolvable
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    bus_hosts = {b.host for b in site.config.buses if hasattr(b, "host")}
    assert bus_hosts == {"simulator"}
    assert {s.type for s in site.config.sinks} == {"mqtt", "influx"}


# --- the stack's Mosquitto, and the stack without Docker -----------------------------------------------------

class StackBroker:
    """deploy/docker/mosquitto: entrypoint.sh writes the passwords; mosquitto.conf + the fleet ACL on loopback."""

    def __init__(self, folder: Path):
        need("mosquitto")
        need("mosquitto_passwd")
        self.folder = folder
        folder.mkdir(parents=True)
        self.env = service_env("mosquitto")
        self.passwd = folder / "passwd"
        run = subprocess.run(["sh", str(DEPLOY / "docker/mosquitto/entrypoint.sh"), "true"], capture_output=True,
                             text=True, env={**os.environ, **self.env, "MOSQUITTO_PASSWD_FILE": str(self.passwd)})
        assert run.returncode == 0, run.stderr
        self.port = free_port()
        conf = (DEPLOY / "docker/mosquitto/mosquitto.conf").read_text()
        for old, new in (("/mosquitto/data/passwd", str(self.passwd)), ("/mosquitto/config/acl",
                         str(DEPLOY / "mosquitto/acl")), ("/mosquitto/data/", f"{folder}/"),
                         ("listener 1883\n", f"listener {self.port} 127.0.0.1\n")):
            assert old in conf
            conf = conf.replace(old, new)
        (folder / "mosquitto.conf").write_text(conf + "user root\n")
        self.proc = subprocess.Popen(["mosquitto", "-c", str(folder / "mosquitto.conf")], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, start_new_session=True)
        wait_until(lambda: port_open(self.port), 10, "mosquitto")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture
def stack_broker(tmp_path: Path):
    b = StackBroker(tmp_path / "mosquitto")
    yield b
    b.stop()


def test_stack_mosquitto_users_acl_and_healthcheck(stack_broker: StackBroker) -> None:
    users = [line.split(":")[0] for line in stack_broker.passwd.read_text().splitlines()]
    assert users == ["demo-site", "telegraf", "dashboard"]
    assert oct(stack_broker.passwd.stat().st_mode & 0o777) == "0o600"
    assert all(stack_broker.env[k] not in stack_broker.passwd.read_text() for k in stack_broker.env if "PASSWORD" in k)
    # The compose healthcheck, as the container runs it (port rewritten).
    test = compose()["services"]["mosquitto"]["healthcheck"]["test"]
    assert test[0] == "CMD-SHELL"
    cmd = interpolate(test[1]).replace("-p 1883", f"-p {stack_broker.port}")
    health = subprocess.run(["sh", "-c", cmd], env={**os.environ, **stack_broker.env}, capture_output=True,
                            text=True, timeout=20)
    assert health.returncode == 0, health.stderr
    wrong = subprocess.run(["sh", "-c", cmd], env={**os.environ, "DASHBOARD_MQTT_PASSWORD": "nope"},
                           capture_output=True, text=True, timeout=20)
    assert wrong.returncode != 0, "the healthcheck really authenticates"


def start(args: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with open(log, "wb") as out:
        return subprocess.Popen(args, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def stop(p: subprocess.Popen[bytes]) -> int:
    if p.poll() is None:
        os.kill(p.pid, signal.SIGTERM)
        try:
            return p.wait(15)
        except subprocess.TimeoutExpired:
            os.kill(p.pid, signal.SIGKILL)
            p.wait()
    return p.returncode


def test_the_stack_runs_without_docker(tmp_path: Path, stack_broker: StackBroker) -> None:
    """simulator + gateway with the compose commands and environment, the hosts swapped for loopback."""
    vm_bin = shutil.which("victoria-metrics")
    if vm_bin is None:
        msg = "victoria-metrics is not installed (apt-get install victoria-metrics)"
        if CI:
            pytest.fail(msg)
        pytest.skip(msg)
    vm_port, tcp_port, rtu_port, metrics_port = free_port(), free_port(), free_port(), free_port()
    vm = subprocess.Popen([vm_bin, f"-storageDataPath={tmp_path}/vm", f"-httpListenAddr=127.0.0.1:{vm_port}",
                           "-retentionPeriod=100y", "-search.latencyOffset=0s", "-loggerLevel=ERROR"],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    bin_dir = Path(sys.executable).parent
    ports = {"PLUME_SIM_TCP_PORT": str(tcp_port), "PLUME_SIM_RTU_PORT": str(rtu_port)}
    sim_cmd = compose()["services"]["simulator"]["command"]
    gw_cmd = compose()["services"]["gateway"]["command"]
    sim_env = {**service_env("simulator"), **ports, "PLUME_SIM_HOST": "127.0.0.1"}
    gw_env = {**service_env("gateway"), **ports, "PLUME_SIM_HOST": "127.0.0.1", "PLUME_MQTT_HOST": "127.0.0.1",
              "PLUME_MQTT_PORT": str(stack_broker.port), "PLUME_INFLUX_URL": f"http://127.0.0.1:{vm_port}",
              "PLUME_LOG_DIR": str(tmp_path / "log")}
    site_arg = {"/etc/plume/site.yaml": str(SITE)}
    sim = gw = None
    watcher = Client.__new__(Client)
    try:
        wait_until(lambda: port_open(vm_port), 10, "victoria-metrics")
        sim = start([str(bin_dir / sim_cmd[0]), *[site_arg.get(a, a) for a in sim_cmd[1:]]], sim_env,
                    tmp_path / "sim.log")
        wait_until(lambda: port_open(tcp_port) and port_open(rtu_port), 15, "the simulator's buses")
        # The simulator's compose healthcheck, ports rewritten.
        hc = compose()["services"]["simulator"]["healthcheck"]["test"]
        code = hc[3].replace("15020", str(tcp_port)).replace("15021", str(rtu_port))
        subprocess.run([sys.executable, "-c", code], check=True, timeout=10)

        watcher = _watch(stack_broker)
        args = [site_arg.get(a, a) for a in gw_cmd[1:]]
        args[args.index("9464")] = str(metrics_port)
        args[args.index("0.0.0.0")] = "127.0.0.1"
        gw = start([str(bin_dir / gw_cmd[0]), *args], gw_env, tmp_path / "gateway.log")

        def devices_seen() -> set[str]:
            return {t.split("/")[2] for t, _ in watcher.snapshot() if t.endswith("/data")}

        wait_until(lambda: devices_seen() == {"dust-1", "stack-1", "dust-2", "so2-1"} or gw.poll() is not None, 30,
                   "data from the four simulated devices over MQTT")
        assert gw.poll() is None, (tmp_path / "gateway.log").read_text()

        def series() -> list[str]:
            loopback_http().get(f"http://127.0.0.1:{vm_port}/internal/force_flush", timeout=5)
            r = loopback_http().get(f"http://127.0.0.1:{vm_port}/api/v1/label/__name__/values", timeout=5)
            return list(r.json().get("data", []))

        wait_until(lambda: {"dust_pm10", "cems_so2"} <= set(series()), 20, "points in the InfluxDB v2 sink")
        # The gateway's compose healthcheck, port rewritten.
        hc = compose()["services"]["gateway"]["healthcheck"]["test"]
        subprocess.run([sys.executable, "-c", hc[3].replace("9464", str(metrics_port))], check=True, timeout=10)
    finally:
        if watcher.__dict__:
            watcher.close()
        codes = [stop(p) for p in (gw, sim) if p is not None]
        stop(vm)
    assert codes[0] == 0, (tmp_path / "gateway.log").read_text()
    log = (tmp_path / "gateway.log").read_text()
    assert "connected to 127.0.0.1" in log and "Traceback" not in log


def _watch(broker: StackBroker) -> Client:
    """The dashboard user, subscribed to everything it may read (plain MQTT, as inside the compose network)."""
    fake = type("B", (), {"port": broker.port})()
    c = Client(fake, "dashboard", broker.env["DASHBOARD_MQTT_PASSWORD"], tls=False)  # type: ignore[arg-type]
    assert c.accepted
    c.subscribe("plume/#")
    return c
