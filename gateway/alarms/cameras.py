"""Site-file sections `cameras` and `snapshots`: the site cameras whose picture goes with an alarm, and where those
pictures are kept.

A camera is named by its HTTP snapshot URL (what ONVIF cameras and NVRs expose: `GetSnapshotUri`, Hikvision's
`/ISAPI/Streaming/channels/101/picture`, Dahua's `/cgi-bin/snapshot.cgi`), its login (digest, the usual camera
default, or basic) and the devices it watches. Its time box (`attempts` x `timeout_s`, the pauses between and 0.5 s) is
the longest an alarm's notification ever waits for its picture.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, model_validator

from gateway.core.strict import NAME, Strict

RETRY_PAUSE_S = 0.5
SLACK_S = 0.5  # what the time box allows beyond the attempts themselves (scheduling, writing the file)


class CameraConfig(Strict):
    """One camera (site-file section `cameras`)."""

    name: str = Field(pattern=NAME, description="Shown in notifications and the cockpit (e.g. gate-east).")
    url: str = Field(pattern=r"^https?://", description="The snapshot URL (HTTP GET answers one JPEG).")
    auth: Literal["digest", "basic", "none"] = Field("digest", description="How the camera wants the login.")
    username: str | None = None
    password: SecretStr | None = None
    password_env: str | None = None
    password_file: str | None = Field(None, description="File whose first line is the password.")
    devices: list[str] = Field(min_length=1, description="Names of the site devices this camera watches.")
    timeout_s: float = Field(5.0, gt=0, le=60, description="Each attempt's limit (connect and answer).")
    attempts: int = Field(2, ge=1, le=5, description="Attempts before the notification goes without it.")
    max_bytes: int = Field(5_000_000, ge=1000, description="A larger answer is refused (not a snapshot).")

    @model_validator(mode="after")
    def _check(self) -> CameraConfig:
        if sum(x is not None for x in (self.password, self.password_env, self.password_file)) > 1:
            raise ValueError("give password, password_env or password_file: one of them")
        if self.auth != "none" and not self.username:
            raise ValueError(f"auth {self.auth} needs a username (or auth: none)")
        return self

    @property
    def time_box_s(self) -> float:
        """The longest a fetch of this camera takes, retries included (then it is cut off)."""
        return self.attempts * self.timeout_s + (self.attempts - 1) * RETRY_PAUSE_S + SLACK_S


class SnapshotsConfig(Strict):
    """Site-file section `snapshots`: where the cameras' pictures are kept, how long and in how much disk."""

    dir: str | None = Field(None, description="Folder of the JPEG files (default <store.dir>/snapshots).")
    retention_days: float = Field(30.0, gt=0, le=3650, description="Older pictures are removed.")
    max_mb: float = Field(500.0, gt=0, description="Disk budget: over it the oldest pictures are removed first.")

    def folder(self, log_dir: Path, base: Path | None) -> Path:
        """The folder: `dir` (relative to the site file's folder) or `snapshots` next to the log."""
        if self.dir is None:
            return log_dir / "snapshots"
        p = Path(self.dir).expanduser()
        return p if p.is_absolute() or base is None else base / p
