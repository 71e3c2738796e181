"""Per-device availability on the native MQTT contract: `{prefix}/{site}/{device}/status`, retained `online` /
`offline`, derived from the readings in log order (not from the acquisition's memory), so it survives restarts and
reconnects with the same at-least-once guarantee as the data it follows.

A device is `offline` after `offline_after` failed polls in a row (the acquisition backs a device off after two)
and `online` again at its first good poll. The site's last will (`{prefix}/{site}/status` offline) covers every
device at once: a device is available only while both its own status and the site status say `online`.
"""

from __future__ import annotations

from gateway.store.records import ReadingRecord

ONLINE = "online"
OFFLINE = "offline"


class Availability:
    """Folds readings into per-device states and says which state is still to be published on this connection.

    Records already folded (a re-send after a reconnect reads them again) do not count twice; `new_session()`
    makes every known state due again, so a status lost with a broken connection is published on the next one."""

    def __init__(self, offline_after: int = 2):
        self.offline_after = offline_after
        self._failures: dict[str, int] = {}
        self._state: dict[str, str] = {}
        self._published: dict[str, str] = {}
        self._seen = 0

    def new_session(self) -> None:
        self._published.clear()

    def state(self, device: str) -> str | None:
        return self._state.get(device)

    def observe(self, rec: ReadingRecord) -> str | None:
        """The state to publish for this reading's device now, or None when the broker already has it."""
        device = rec.reading.device
        if rec.id > self._seen:
            self._seen = rec.id
            if rec.reading.ok:
                self._failures[device] = 0
                self._state[device] = ONLINE
            else:
                n = self._failures[device] = self._failures.get(device, 0) + 1
                if n >= self.offline_after:
                    self._state[device] = OFFLINE
        state = self._state.get(device)
        if state is None or self._published.get(device) == state:
            return None
        self._published[device] = state
        return state
