"""What a poll error means and what to try, for the person standing next to the device (English and Chinese)."""

from __future__ import annotations

# (substring of the error, cause, hint) in English and Chinese; the first match wins
_RULES: list[tuple[str, tuple[str, str], tuple[str, str]]] = [
    ("offline, next probe", ("the device stopped answering; the gateway probes it now and then",
                             "设备不再应答，网关定期探测"),
     ("check power and wiring; it is back at the first answer", "检查电源与接线；一旦应答即恢复")),
    ("timeout", ("no answer within the timeout", "超时未应答"),
     ("check power, the A/B wires, the slave address and the baud rate/parity; a long line may need a larger "
      "timeout_s", "检查电源、A/B 线、从站地址、波特率与校验；线路较长时加大 timeout_s")),
    ("exception 2", ("the device refused the register address (Modbus exception 2)",
                     "设备拒绝该寄存器地址（异常码 2）"),
     ("the profile's register map does not fit this device or firmware: compare it with the manual",
      "设备配置文件的寄存器表与设备不符：对照说明书")),
    ("exception", ("the device answered with a Modbus exception", "设备返回 Modbus 异常"),
     ("see the exception code in the device manual", "按设备说明书查异常码")),
    ("crc", ("garbled answers (CRC errors)", "应答乱码（CRC 错误）"),
     ("wrong baud rate or parity, a missing termination resistor, or two masters on the line",
      "波特率或校验不对、缺终端电阻，或线路上有两个主站")),
    ("refused", ("the TCP connection was refused", "TCP 连接被拒绝"),
     ("check the host and port of the bus, and that the device or serial server is powered",
      "检查总线的主机与端口，确认设备或串口服务器已上电")),
    ("link", ("the link (serial port or TCP connection) is down", "链路（串口或 TCP）中断"),
     ("check that the USB adapter is plugged in or that the host is reachable", "检查 USB 转换器或网络连通")),
    ("frame", ("no valid frame from the sensor", "传感器没有有效数据帧"),
     ("check the sensor's TX wire and the baud rate", "检查传感器 TX 线与波特率")),
]


def explain(error: str) -> dict[str, str]:
    low = error.lower().replace("no answer", "timeout")
    for needle, cause, hint in _RULES:
        if needle in low:
            return {"cause_en": cause[0], "cause_zh": cause[1], "hint_en": hint[0], "hint_zh": hint[1]}
    return {"cause_en": error, "cause_zh": error, "hint_en": "see the gateway's log", "hint_zh": "查看网关日志"}
