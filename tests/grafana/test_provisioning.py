"""Grafana's provisioning files parse and point where deploy/docker-compose.yml mounts the kit.

No Grafana server can run here to load them; what is checked is what Grafana reads: the YAML, the keys of the
provisioning format (apiVersion 1), the environment variables Grafana substitutes (set on the compose file's
grafana service), the folders' paths against the compose mounts and the dashboard files.
"""

from __future__ import annotations

import re
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from gateway.grafana_push import load_kit

from .boards import DASHBOARDS, GRAFANA, REPO, load_boards

PROVISIONING = GRAFANA / "provisioning"
COMPOSE = REPO / "deploy/docker-compose.yml"
ENV_REF = re.compile(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?")


def load(path: Path) -> dict[str, Any]:
    doc = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(doc, dict) and doc.get("apiVersion") == 1, path
    return doc


def grafana_service() -> dict[str, Any]:
    return dict(yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"]["grafana"])


def container_paths() -> dict[str, Path]:
    """Grafana container path -> repository path, from the compose file's bind mounts."""
    out = {}
    for v in grafana_service()["volumes"]:
        source, target = v.split(":")[:2]
        if source.startswith("."):
            out[target] = (COMPOSE.parent / source).resolve()
    return out


def test_every_provisioning_file_parses() -> None:
    files = sorted(PROVISIONING.rglob("*.y*ml"))
    assert {f.parent.name for f in files} == {"datasources", "dashboards"}
    for f in files:
        load(f)


def test_datasource_is_influxql_with_the_compose_environment() -> None:
    doc = load(PROVISIONING / "datasources/plume.yaml")
    (ds,) = doc["datasources"]
    assert ds["type"] == "influxdb" and ds["access"] == "proxy" and ds["uid"] == "plume-influxdb"
    assert ds["isDefault"] is True
    assert ds["jsonData"]["version"] == "InfluxQL" and ds["jsonData"]["httpMode"] == "POST"
    assert re.fullmatch(r"\d+[smh]", ds["jsonData"]["timeInterval"])
    refs = {m for v in (ds["url"], ds["user"], ds["jsonData"]["dbName"], ds["secureJsonData"]["password"])
            for m in ENV_REF.findall(v)}
    assert refs == {"PLUME_INFLUX_URL", "PLUME_INFLUX_V1_USER", "PLUME_INFLUX_DB", "PLUME_INFLUX_V1_PASSWORD"}
    assert refs <= set(grafana_service()["environment"]), "the compose file sets them on the grafana container"
    assert "password" not in ds and "password" not in ds["jsonData"], "secrets only in secureJsonData"
    # every board defaults to this data source
    for b in load_boards():
        assert any(v["type"] == "datasource" and v["current"]["value"] == ds["uid"] for v in b.variables())


def test_dashboard_providers_point_at_the_mounted_folders() -> None:
    doc = load(PROVISIONING / "dashboards/plume.yaml")
    mounts = container_paths()
    assert mounts["/etc/grafana/provisioning"] == PROVISIONING
    assert mounts["/var/lib/grafana/dashboards"] == DASHBOARDS
    providers = doc["providers"]
    assert len({p["name"] for p in providers}) == len(providers)
    assert len({p["folderUid"] for p in providers}) == len({p["folder"] for p in providers}) == len(providers)
    covered = set()
    for p in providers:
        assert p["type"] == "file" and p["folder"] and p["allowUiUpdates"] is False
        path = PurePosixPath(p["options"]["path"])
        assert path.parent == PurePosixPath("/var/lib/grafana/dashboards"), path
        local = DASHBOARDS / path.name
        assert sorted(local.glob("*.json")), f"{path}: no dashboards in {local}"
        covered.add(local)
    assert covered == {f.parent for f in DASHBOARDS.glob("*/*.json")}, "every dashboard folder has a provider"


def test_push_uses_the_same_folders_as_the_provisioning() -> None:
    doc = load(PROVISIONING / "dashboards/plume.yaml")
    by_dir = {PurePosixPath(p["options"]["path"]).name: (p["folderUid"], p["folder"]) for p in doc["providers"]}
    for b in load_kit(GRAFANA):
        assert (b.folder_uid, b.folder_title) == by_dir[b.path.parent.name]
