"""Each device of a site with its profile resolved: built-in, profiles_dir or path; inline registers merged over
the profile's; per-device request limits applied. Also the checks that tie devices to buses (names, addresses,
frame sensors on their own serial port)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import ValidationError

from gateway.config import DeviceConfig, SiteConfig, pydantic_problems
from gateway.profile import Profile, find_profile_file, load_profile
from gateway.site.model import ResolvedDevice
from gateway.site.names import index_by_name


def resolve_devices(cfg: SiteConfig, base: Path, problems: list[str]) -> list[ResolvedDevice]:
    dirs = tuple((base / d) for d in cfg.profiles_dir)
    for i, d in enumerate(dirs):
        if not d.is_dir():
            problems.append(f"profiles_dir[{i}]: {d} is not a folder")
    buses = index_by_name((b.name for b in cfg.buses), "buses", "bus name", problems)
    index_by_name((d.name for d in cfg.devices), "devices", "device name", problems)
    addresses: dict[tuple[str, int], int] = {}
    frame_bus_users: dict[str, int] = {}
    resolved: list[ResolvedDevice] = []
    for i, dev in enumerate(cfg.devices):
        where = f"devices[{i}]"
        bus = cfg.buses[buses[dev.bus]] if dev.bus in buses else None
        if bus is None:
            known = ", ".join(buses) or "none defined"
            problems.append(f"{where}.bus: no bus named {dev.bus!r} (buses: {known})")
        profile = _device_profile(dev, dirs, where, problems, base)
        if profile is None:
            continue
        if bus is not None:
            frames = profile.protocol != "modbus"
            if frames and bus.type != "serial":
                problems.append(f"{where}.bus: profile {profile.name} speaks {profile.protocol} frames; "
                                f"put it on a bus of type serial, not {bus.type}")
            elif not frames and bus.type == "serial":
                problems.append(f"{where}.bus: bus {bus.name} is a raw serial (frames) bus; a Modbus device needs "
                                "rtu, tcp or rtu_over_tcp")
            elif frames:
                if dev.enabled and bus.name in frame_bus_users:
                    problems.append(f"{where}.bus: serial bus {bus.name} already carries "
                                    f"devices[{frame_bus_users[bus.name]}]; a frame sensor needs its own port")
                frame_bus_users.setdefault(bus.name, i)
            elif dev.enabled:
                key = (bus.name, dev.address)
                if key in addresses:
                    problems.append(f"{where}.address: address {dev.address} on bus {bus.name} is already "
                                    f"taken by devices[{addresses[key]}]")
                addresses.setdefault(key, i)
        resolved.append(ResolvedDevice(dev, profile))
    return resolved


def _device_profile(dev: DeviceConfig, dirs: tuple[Path, ...], where: str, problems: list[str],
                    folder: Path = Path()) -> Profile | None:
    base: Profile | None = None
    if dev.profile is not None:
        ref = dev.profile
        if Path(ref).suffix in (".yaml", ".yml") and not Path(ref).is_absolute():
            ref = str(folder / ref)  # a relative path is the site file's, whatever the working directory
        path = find_profile_file(ref, dirs)
        if path is None:
            problems.append(f"{where}.profile: no profile {dev.profile!r} (a built-in name, a name in "
                            "profiles_dir, or a path to a .yaml file; `plume profiles list` lists the built-ins)")
            return None
        try:
            base = load_profile(str(path))
        except ValidationError as exc:
            problems.extend(pydantic_problems(exc, prefix=f"{where}.profile ({path}): "))
            return None
        except Exception as exc:
            problems.append(f"{where}.profile: cannot read {path}: {' '.join(str(exc).split())}")
            return None
    elif not dev.registers:
        problems.append(f"{where}.profile: give a profile or inline registers")
        return None
    elif dev.kind is None:
        problems.append(f"{where}.kind: a device without a profile needs a kind (dust, cems, ...)")
        return None
    # a device's own register entry replaces the profile's channel of the same name (a different scale, a sim hint)
    own = {r.channel for r in dev.registers}
    registers = [*(r for r in (base.registers if base else []) if r.channel not in own), *dev.registers]
    status = [*(base.status if base else []), *dev.status]
    merged: dict[str, Any] = {
        "name": base.name if base else dev.name,
        "kind": dev.kind or (base.kind if base else ""),
        "description": base.description if base else "",
        "protocol": base.protocol if base else "modbus",
        "max_registers_per_request": dev.max_registers_per_request
        or (base.max_registers_per_request if base else 125),
        "max_bits_per_request": base.max_bits_per_request if base else 2000,
        "max_gap": dev.max_gap if dev.max_gap is not None else (base.max_gap if base else 8),
        "registers": [r.model_dump() for r in registers],
        "status": [s.model_dump() for s in status],
    }
    try:
        profile = Profile.model_validate(merged)
    except ValidationError as exc:
        problems.extend(pydantic_problems(exc, prefix=f"{where}: "))
        return None
    nbase = len(registers) - len(dev.registers)
    for j, r in enumerate(profile.registers):
        limit = profile.max_bits_per_request if r.is_bit_function else profile.max_registers_per_request
        if r.words > limit:
            field = f"registers[{j - nbase}].length" if j >= nbase else "max_registers_per_request"
            problems.append(f"{where}.{field}: channel {r.channel} needs {r.words} registers, more than this "
                            f"device's max_registers_per_request {limit}")
    return profile
