"""The CLI's side of the cockpit API: find the running gateway of a site through its endpoint file
(`{store.dir}/cockpit.json`, mode 0600, written by `plume run` while it runs) and call it over loopback with the
token in that file. Whoever can read the file can read the log beside it, so the token gives nothing more."""

from __future__ import annotations

import json
from typing import Any

import httpx

from gateway.cockpit.server import endpoint_path
from gateway.site.model import Site


class NoGateway(Exception):
    """No running gateway answers for this site; `str()` is the one line to show."""


class CockpitClient:
    def __init__(self, url: str, token: str, timeout_s: float = 10.0):
        self.url = url
        # the cockpit answers on plain loopback HTTP: no CA store to load (~50 ms of CPU per command) unless https
        self._http = httpx.Client(base_url=url, timeout=timeout_s, headers={"authorization": f"Bearer {token}"},
                                  trust_env=False, verify=url.startswith("https:"))

    @classmethod
    def for_site(cls, site: Site) -> CockpitClient:
        path = endpoint_path(site.config.store.log_path(site.path).parent)
        if not site.config.cockpit.enabled:
            raise NoGateway(f"the cockpit of site {site.id} is off: these views need `cockpit: {{enabled: true}}` "
                            f"in {site.path} and a running `plume run`")
        try:
            info = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise NoGateway(f"no gateway is running for site {site.id} (no {path}; start it with "
                            f"`plume run {site.path}`)") from None
        except PermissionError:
            raise NoGateway(f"cannot read {path}: run this as the user that runs the gateway (or root)") from None
        except (OSError, ValueError) as exc:
            raise NoGateway(f"cannot read {path}: {exc}") from None
        return cls(str(info["url"]), str(info["token"]))

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
              params: dict[str, Any] | None = None) -> Any:
        try:
            r = self._http.request(method, path, json=body, params=params)
        except httpx.ConnectError:
            raise NoGateway(f"no gateway answers at {self.url} (it stopped? `systemctl status plume` or start "
                            "`plume run`)") from None
        except httpx.HTTPError as exc:
            raise NoGateway(f"the gateway at {self.url} did not answer: {exc}") from None
        try:
            data = r.json()
        except ValueError:
            data = {"error": r.text.strip()}
        if r.status_code >= 400:
            raise ApiError(str(data.get("error") or r.reason_phrase))
        return data

    def get(self, path: str, **params: Any) -> Any:
        return self._call("GET", path, params={k: v for k, v in params.items() if v is not None})

    def post(self, path: str, body: dict[str, Any]) -> Any:
        return self._call("POST", path, body)


class ApiError(Exception):
    """The gateway refused the request; `str()` says why."""
