"""Write the NATS `authorization` block for a Plume fleet: one MQTT-only user per site, the ingest service.

    python deploy/central/nats/authz.py --sites sites.txt --ingest-password-file ingest.pass > authorization.conf

`sites.txt` has one `site-id password` per line (generate passwords with `openssl rand -base64 24`). Every node
of the cluster includes the same file (`include authorization.conf`); `nats-server --signal reload` re-reads it.

What each user may do (subjects are MQTT topics with `/` -> `.`):
- a site (MQTT connections only): publish under `plume.<site>.>` (data, status, health, agg, alarms), subscribe
  to its own commands `plume.<site>.cmd` / `plume.<site>.cmd.>` (plus `$MQTT.sub.>`, how the server delivers
  QoS 1 subscriptions); nothing of another site.
- `ingest` (NATS connections only): the JetStream API calls of its durable consumer on `$MQTT_msgs` (and of
  the bridge consumer its stall watchdog makes), its acknowledgements, and the push consumer's delivery
  subject; it can publish nothing under `plume.`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

SITE_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")  # no `.`, `*`, `>` or `/`: one subject token

INGEST_PUBLISH = [
    "$JS.API.INFO",
    "$JS.API.STREAM.INFO.$MQTT_msgs",
    "$JS.API.STREAM.CREATE.$MQTT_msgs",  # ingest.py --create, before the first MQTT client (see there)
    "$JS.API.CONSUMER.CREATE.$MQTT_msgs",
    # the consumers ingest.py reads (the pull consumer, the default; the push one, --push) and the bridge its
    # stall watchdog makes when it re-creates one at its ack floor (jsconsumer.py); DELETE for that re-creation
    *(f"$JS.API.CONSUMER.{api}.$MQTT_msgs.{name}{suffix}"
      for name in ("plume-ingest-pull", "plume-ingest") for suffix in ("", "-bridge")
      for api in ("INFO", "DURABLE.CREATE", "DELETE")),
    *(f"$JS.API.CONSUMER.CREATE.$MQTT_msgs.{name}{suffix}.>"
      for name in ("plume-ingest-pull", "plume-ingest") for suffix in ("", "-bridge")),
    "$JS.API.CONSUMER.MSG.NEXT.$MQTT_msgs.plume-ingest-pull",
    "$JS.ACK.$MQTT_msgs.plume-ingest.>",
    "$JS.ACK.$MQTT_msgs.plume-ingest-pull.>",
]
INGEST_SUBSCRIBE = ["_INBOX.>", "plume-ingest.deliver", "plume.*.*.data"]  # the last: ingest.py --core


def site_user(site: str, password: str) -> dict[str, object]:
    if not SITE_ID.match(site):
        raise ValueError(f"site id {site!r}: letters, digits, - and _ only (it is one MQTT topic level)")
    return {
        "user": site, "password": password, "allowed_connection_types": ["MQTT"],
        "permissions": {
            "publish": {"allow": [f"plume.{site}.>"]},
            # QoS 1 subscriptions are delivered through an internal subject `$MQTT.sub.<id>` that the user must
            # be allowed; an MQTT client cannot subscribe to `$MQTT/sub/...` itself (the server refuses it), and
            # a site user has no NATS connection, so this grants nothing else.
            "subscribe": {"allow": [f"plume.{site}.cmd", f"plume.{site}.cmd.>", "$MQTT.sub.>"]},
        },
    }


def ingest_user(password: str, user: str = "ingest") -> dict[str, object]:
    return {"user": user, "password": password, "allowed_connection_types": ["STANDARD"],
            "permissions": {"publish": {"allow": INGEST_PUBLISH}, "subscribe": {"allow": INGEST_SUBSCRIBE}}}


def authorization(sites: dict[str, str], ingest_password: str, extra: list[dict[str, object]] | None = None) -> str:
    """The block as NATS config text (JSON values are valid NATS config)."""
    users = [site_user(s, p) for s, p in sites.items()] + [ingest_user(ingest_password)] + (extra or [])
    lines = ",\n    ".join(json.dumps(u, separators=(", ", ": ")) for u in users)
    return f"authorization {{\n  users: [\n    {lines}\n  ]\n}}\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sites", type=Path, required=True, help="file: `site-id password` per line")
    ap.add_argument("--ingest-password-file", type=Path, required=True)
    args = ap.parse_args()
    sites: dict[str, str] = {}
    for n, line in enumerate(args.sites.read_text().splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            print(f"{args.sites}:{n}: expected `site-id password`", file=sys.stderr)
            return 2
        sites[parts[0]] = parts[1]
    sys.stdout.write(authorization(sites, args.ingest_password_file.read_text().splitlines()[0]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
