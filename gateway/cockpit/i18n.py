"""The cockpit's words in Chinese and English (one table; the page and the CLI use the same keys), and which
language a site gets by default: Chinese where the site's zone is in China, English elsewhere."""

from __future__ import annotations

import json

CHINA_ZONES = {"Asia/Shanghai", "Asia/Chongqing", "Asia/Chungking", "Asia/Harbin", "Asia/Urumqi", "Asia/Kashgar",
               "PRC", "Asia/Hong_Kong", "Asia/Macau", "Asia/Macao", "Hongkong"}

WORDS: dict[str, tuple[str, str]] = {  # key: (Chinese, English)
    "title": ("现场驾驶舱", "Site cockpit"),
    "overview": ("总览", "Overview"),
    "alarms": ("报警", "Alarms"),
    "delivery": ("数据传输", "Delivery"),
    "commissioning": ("调试", "Commissioning"),
    "device": ("设备", "Device"),
    "devices": ("设备", "Devices"),
    "local_time": ("当地时间", "Local time"),
    "state": ("状态", "State"),
    "online": ("在线", "online"),
    "offline": ("离线", "offline"),
    "errors": ("应答有错误", "answering with errors"),
    "backed_off": ("离线（退避探测中）", "offline (backed off)"),
    "unknown": ("未轮询", "not polled yet"),
    "last_poll": ("最近轮询", "Last poll"),
    "success_rate": ("成功率", "Success rate"),
    "values": ("最新数值", "Latest values"),
    "channel": ("通道", "Channel"),
    "value": ("数值", "Value"),
    "unit": ("单位", "Unit"),
    "flag": ("标记", "Flag"),
    "legend": ("HJ 212 数据标记", "HJ 212 data flags"),
    "flag_N": ("正常", "normal"),
    "flag_B": ("通讯异常", "communication fault"),
    "flag_D": ("仪器故障", "instrument fault"),
    "flag_T": ("超测量上限", "over the instrument's range"),
    "flag_C": ("校准", "calibration"),
    "flag_M": ("维护", "maintenance"),
    "flag_F": ("停运", "stopped"),
    "flag_S": ("手工输入", "manual"),
    "active_alarms": ("当前报警", "Active alarms"),
    "no_alarms": ("没有报警", "No active alarm"),
    "picture": ("现场照片", "Picture"),
    "no_picture": ("无现场照片", "No picture"),
    "camera": ("摄像头", "camera"),
    "since": ("开始于", "Since"),
    "limit": ("限值", "Limit"),
    "rule": ("规则", "Rule"),
    "acked": ("已确认", "acknowledged"),
    "acknowledge": ("确认", "Acknowledge"),
    "by": ("确认人", "Your name"),
    "comment": ("备注", "Comment"),
    "ack_sent": ("确认已提交", "Acknowledgement sent"),
    "last_events": ("最近事件", "Last events"),
    "time": ("时间", "Time"),
    "event": ("事件", "Event"),
    "message": ("内容", "Message"),
    "raised": ("触发", "raised"),
    "acknowledged": ("确认", "acknowledged"),
    "renotify": ("重复通知", "renotify"),
    "escalated": ("升级", "escalated"),
    "cleared": ("解除", "cleared"),
    "sink": ("目的地", "Destination"),
    "type": ("类型", "Type"),
    "target": ("地址", "Target"),
    "connected": ("已连接", "connected"),
    "disconnected": ("未连接", "not connected"),
    "backlog": ("积压", "Backlog"),
    "backlog_age": ("积压时长", "Oldest waiting"),
    "last_error": ("最近错误", "Last error"),
    "last_delivered": ("最近送达", "Last delivered"),
    "log": ("本地数据日志", "Durable log"),
    "log_size": ("占用", "Size"),
    "disk_cap": ("上限", "Disk cap"),
    "readings": ("条记录", "readings"),
    "dropped": ("因容量丢弃", "dropped by the cap"),
    "last_hour": ("最近一小时", "Last hour"),
    "device_errors": ("错误", "Errors"),
    "cause": ("原因", "Cause"),
    "hint": ("建议", "What to do"),
    "plan": ("轮询计划", "Poll plan"),
    "requests": ("请求", "requests"),
    "wire_time": ("线路时间", "wire time"),
    "bytes": ("字节", "bytes"),
    "read_now": ("立即读取", "Read now"),
    "reading": ("读取中…", "Reading…"),
    "password": ("密码", "Password"),
    "login": ("登录", "Log in"),
    "logout": ("退出", "Log out"),
    "wrong_password": ("密码错误", "Wrong password"),
    "language": ("English", "中文"),
    "none": ("无", "none"),
    "never": ("从未", "never"),
    "live": ("实时", "live"),
    "reconnecting": ("连接中断，正在重连", "connection lost, reconnecting"),
    "bus": ("总线", "Bus"),
    "address": ("地址", "Address"),
    "interval": ("轮询间隔", "Poll interval"),
    "no_data": ("最近一小时没有数据", "no data in the last hour"),
    "s": ("秒", "s"),
}


def default_language(timezone: str, configured: str = "auto") -> str:
    if configured in ("zh", "en"):
        return configured
    return "zh" if timezone in CHINA_ZONES else "en"


def word(key: str, lang: str) -> str:
    zh, en = WORDS.get(key, (key, key))
    return zh if lang == "zh" else en


def script(default: str) -> str:
    """The table as a JavaScript file for the page (served by the gateway like every other asset)."""
    table = {"zh": {k: v[0] for k, v in WORDS.items()}, "en": {k: v[1] for k, v in WORDS.items()}}
    return (f"window.PLUME_WORDS = {json.dumps(table, ensure_ascii=False)};\n"
            f"window.PLUME_DEFAULT_LANG = {json.dumps(default)};\n")
