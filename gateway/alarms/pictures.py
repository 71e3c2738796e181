"""An alarm event's camera picture (or why there is none) and the lines a notification says about it.

Kept apart from `gateway.alarms.snapshots` (the fetching, the folder, the log consumer) so that the notification
formats, and the site schema that imports them, need none of its I/O (asyncio, the log, HTTP).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(slots=True, frozen=True)
class Picture:
    """One camera's picture for one alarm event, or why there is none (`file` None, `reason` says the kind:
    timeout, auth, http, network, not_jpeg, too_big, stale)."""

    camera: str
    file: str | None
    reason: str = ""
    detail: str = ""
    taken_at: int = 0
    size: int = 0
    event_id: str = ""
    alarm_id: str = ""
    site: str = ""

    @property
    def ok(self) -> bool:
        return self.file is not None


# --- what a person reads -------------------------------------------------------------------------------------------
Shot = tuple[Picture, "bytes | None"]  # a picture and its JPEG (None: there is none)

_WHY = {
    "en": {"timeout": "did not answer", "auth": "refused the login (wrong username or password)",
           "http": "answered with an error", "network": "could not be reached", "not_jpeg": "did not send a picture",
           "too_big": "sent a picture that is too large", "stale": "was not asked: the gateway was not running when "
           "the alarm was raised", "disk": "took a picture the gateway could not store",
           "removed": "took a picture that was removed since (snapshot disk budget)"},
    "zh": {"timeout": "无响应", "auth": "拒绝登录 (用户名或密码错误)", "http": "返回错误", "network": "无法连接",
           "not_jpeg": "返回的不是图片", "too_big": "图片过大", "stale": "未拍摄: 告警时网关未运行",
           "disk": "图片无法保存", "removed": "图片已被清理 (存储空间上限)"},
}
_TAKEN = {
    "en": {"attached": "Picture: camera {cam}, attached", "next": "Picture: camera {cam}, in the next message",
           "linked": "Picture: camera {cam}, below",
           "elsewhere": "Picture: camera {cam}, taken (in the e-mail and the cockpit)"},
    "zh": {"attached": "现场照片: 摄像头 {cam}, 见附件", "next": "现场照片: 摄像头 {cam}, 见下一条消息",
           "linked": "现场照片: 摄像头 {cam}, 见下图",
           "elsewhere": "现场照片: 摄像头 {cam}, 已拍摄 (见邮件或现场看板)"},
}
_MISSING = {"en": "No picture: camera {cam} {why} ({detail}); this notification goes out without it",
            "zh": "无现场照片: 摄像头 {cam} {why} ({detail}), 本通知不含照片"}


def why(reason: str, language: str) -> str:
    """Why a camera's picture is missing, for people."""
    return _WHY[language].get(reason, _WHY[language]["http"])


def picture_lines(shots: list[Shot], language: str, where: str = "attached") -> list[str]:
    """One line per camera: where its picture is, or that there is none and why."""
    out = []
    for pic, data in shots:
        if data is not None:
            out.append(_TAKEN[language][where].format(cam=pic.camera))
        else:
            out.append(_MISSING[language].format(cam=pic.camera, why=why(pic.reason, language), detail=pic.detail))
    return out
