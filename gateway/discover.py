"""`plume discover`: find the devices on RS-485 lines whose settings nobody wrote down.

For each line it sweeps the usual baud rates and parities (the most common first) and the slave ids; a line's
devices share one setting, so the sweep of a line stops at the first setting where something answers (unless
`all_settings`). Each device found is fingerprinted against the built-in Modbus profiles: every register of a
profile is read once and decoded; a profile fits when all its registers answer with plausible values (inside the
channel's min/max, finite, a float of a sane magnitude, a status code the profile knows). Of the profiles that
fit, the one with the most evidence wins: a plausible float or 32-bit value is hard to get by chance, a 16-bit
count in a wide range (a 4-20 mA module's raw input) easy, so each register weighs by its type (`EVIDENCE`).
The result is a ready-to-paste `buses:` + `devices:` block, or a starter site file (`plume init`'s text,
gateway/site/starter.py).

What was found is kept in a list the caller owns, so Ctrl-C still shows it.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from gateway.acquisition.codec import decode, status_flag
from gateway.acquisition.link import ModbusLink, ReadError
from gateway.acquisition.planner import one_request_per_item
from gateway.config import RtuBus
from gateway.core.model import Flag
from gateway.profile import DataType, Profile, RegisterSpec, builtin_profile_names, load_profile

BAUD_RATES = (9600, 19200, 4800, 38400, 115200, 2400)  # the usual ones, most common first
PARITIES = ("N", "E", "O")
PROBE = (3, 0)  # function, register: any answer, even a Modbus exception, means a device is there
FLOAT_SANE = (1e-6, 1e12)  # |value| of a plausible float: not a denormal made of two integers, not absurd


EVIDENCE = {DataType.f32: 3.0, DataType.f64: 3.0, DataType.u32: 2.0, DataType.i32: 2.0, DataType.u64: 2.0,
            DataType.i64: 2.0, DataType.bits: 0.5}  # other types 1; a status register with codes 2, with bits 1


def evidence(profile: Profile) -> float:
    """How unlikely it is that a device of another kind answers all of this profile's registers plausibly."""
    regs = sum(EVIDENCE.get(r.type, 1.0) for r in profile.registers)
    return regs + sum(2.0 if s.codes else 1.0 for s in profile.status)


@dataclass(slots=True)
class Fit:
    profile: str
    plausible: int
    of: int
    why_not: str = ""
    evidence: float = 0.0

    @property
    def fits(self) -> bool:
        return self.plausible == self.of


@dataclass(slots=True)
class FoundDevice:
    port: str
    baudrate: int
    parity: str
    address: int
    answer: str
    fits: list[Fit] = field(default_factory=list)

    @property
    def profile(self) -> Fit | None:
        """The best fitting profile (all registers plausible, most evidence), or None."""
        good = [f for f in self.fits if f.fits]
        return max(good, key=lambda f: (f.evidence, f.of)) if good else None

    @property
    def also(self) -> list[str]:
        """Other profiles whose registers all answered plausibly too."""
        best = self.profile
        return [f.profile for f in self.fits if f.fits and f is not best]

    @property
    def best_guess(self) -> Fit | None:
        return max(self.fits, key=lambda f: (f.plausible / f.of, f.of)) if self.fits else None


Say = Callable[[str], None]


def modbus_profiles() -> list[Profile]:
    return [p for p in (load_profile(n) for n in builtin_profile_names()) if p.protocol == "modbus"]


def _plausible(spec: RegisterSpec, words: list[int]) -> str:
    """'' when the channel's value is plausible, else why not."""
    cv = decode(spec, words)
    if cv.value is None or cv.flag is not Flag.N:
        return f"{spec.channel} = {cv.value} ({cv.note or cv.flag.value})"
    v = cv.value
    floats = (DataType.f32, DataType.f64, DataType.f16)
    if spec.type in floats and isinstance(v, float) and (
            not math.isfinite(v) or (v != 0 and not FLOAT_SANE[0] <= abs(v) <= FLOAT_SANE[1])):
        return f"{spec.channel} = {v:g} (not a sane {spec.unit or 'value'})"
    return ""


def fit_timeout(sweep_timeout_s: float) -> float:
    """How long to wait for each register of a device that has answered. The sweep's timeout is kept short so that
    247 silent ids go by quickly; one late answer from a device known to be there (a busy line, a slow converter)
    must not make its profile look wrong."""
    return max(0.5, 2 * sweep_timeout_s)


async def fit(link: ModbusLink, address: int, profile: Profile, timeout_s: float) -> Fit:
    """Read each register of the profile once; stop at the first one that does not answer plausibly."""
    requests = one_request_per_item(profile)
    ok = 0
    for req in requests:
        item = req.items[0]
        try:
            words = await link.read(req.function, req.address, req.count, address, timeout_s)
        except ReadError as exc:
            return Fit(profile.name, ok, len(requests), f"fc{req.function}@{req.address}: {exc}")
        if isinstance(item, RegisterSpec):
            why = _plausible(item, words)
        else:
            why = "" if not item.codes or status_flag(item, words) is not Flag.N or int(words[0]) in item.codes \
                else f"status {words[0]} is no code of the profile"
        if why:
            return Fit(profile.name, ok, len(requests), why)
        ok += 1
    return Fit(profile.name, ok, len(requests), evidence=evidence(profile))


async def discover_line(port: str, found: list[FoundDevice], *, baudrates: list[int], parities: list[str],
                        ids: list[int], timeout_s: float, first: bool, all_settings: bool, say: Say,
                        advance: Callable[[], None] = lambda: None) -> None:
    """Sweep one line, appending to `found` as devices answer (so an interrupted sweep keeps what it found)."""
    profiles = modbus_profiles()
    for baud in baudrates:
        for parity in parities:
            bus = RtuBus(name="discover", type="rtu", port=port, baudrate=baud, parity=parity)
            link = ModbusLink(bus, io_timeout_s=max(3.0, timeout_s + 1))
            setting = f"{baud} 8{parity}1"
            say(f"trying {port} at {setting}: ids {_ranges(ids)}")
            here = 0
            try:
                for i in ids:
                    advance()
                    answer = await _probe(link, i, timeout_s)
                    if answer is None:
                        continue
                    dev = FoundDevice(port, baud, parity, i, answer)
                    found.append(dev)
                    here += 1
                    for p in profiles:  # it answered: worth waiting longer than a sweep's per-id timeout
                        dev.fits.append(await fit(link, i, p, fit_timeout(timeout_s)))
                    best = dev.profile
                    say(f"found id {i} on {port} at {setting}: "
                        + (f"{best.profile} ({best.plausible}/{best.of} registers plausible)" if best else
                           "no built-in profile fits"))
                    if first:
                        return
            except ReadError as exc:  # the port refuses this setting, or is not there: say so, try the next
                say(f"cannot try {port} at {setting}: {' '.join(str(exc).split())}")
            finally:
                link.close()
            if here and not all_settings:
                return


async def _probe(link: ModbusLink, unit: int, timeout_s: float) -> str | None:
    function, address = PROBE
    try:
        words = await link.read(function, address, 1, unit, timeout_s)
    except ReadError as e:
        if e.kind == "exception":
            return f"answered with {e}"
        if e.kind == "link":
            raise
        return None  # silence, or garbage (another setting's noise): nobody we can talk to here
    return f"register {address} = {words[0]}"


def _ranges(ids: list[int]) -> str:
    if not ids:
        return "none"
    parts, start, prev = [], ids[0], ids[0]
    for i in [*ids[1:], None]:
        if i is not None and i == prev + 1:
            prev = i
            continue
        parts.append(f"{start}-{prev}" if prev != start else str(start))
        if i is not None:
            start = prev = i
    return ",".join(parts)


@dataclass(frozen=True, slots=True)
class Line:
    name: str
    port: str
    baudrate: int
    parity: str
    devices: list[tuple[str, FoundDevice]]


def lines_of(found: list[FoundDevice], ports: list[str]) -> list[Line]:
    """Group what was found into buses (one per port and setting) and name the devices kind-N (dust-1, cems-1)."""
    kinds = {p.name: p.kind for p in modbus_profiles()}
    count: dict[str, int] = {}
    lines: list[Line] = []
    for port in ports:
        settings = list(dict.fromkeys((d.baudrate, d.parity) for d in found if d.port == port))
        for baud, parity in settings:
            name = f"rs485-{len(lines) + 1}"
            devs = []
            for d in found:
                if (d.port, d.baudrate, d.parity) == (port, baud, parity):
                    fit_ = d.profile or d.best_guess
                    kind = kinds.get(fit_.profile, "device") if fit_ else "device"
                    count[kind] = count.get(kind, 0) + 1
                    devs.append((f"{kind}-{count[kind]}", d))
            lines.append(Line(name, port, baud, parity, devs))
    return lines


def entry(lines: list[Line]) -> str:
    """The ready-to-paste `buses:` and `devices:` block of a site file."""
    out = ["buses:"]
    for ln in lines:
        out.append(f"  - {{name: {ln.name}, type: rtu, port: {ln.port}, baudrate: {ln.baudrate}, "
                   f"parity: {ln.parity}}}")
    out.append("devices:")
    for ln in lines:
        for name, d in ln.devices:
            best = d.profile
            if best is not None:
                out.append(f"  - {{name: {name}, bus: {ln.name}, address: {d.address}, profile: {best.profile}}}"
                           f"  # {best.plausible}/{best.of} registers plausible")
            else:
                guess = d.best_guess
                hint = (f"closest built-in: {guess.profile} ({guess.plausible}/{guess.of}; {guess.why_not})"
                        if guess else "no built-in Modbus profile")
                out.append(f"  # - {{name: {name}, bus: {ln.name}, address: {d.address}, profile: ???}}"
                           f"  # {d.answer}; {hint}: write a profile (`plume profiles show dust-monitor`)")
    return "\n".join(out) + "\n"


def as_json(lines: list[Line], interrupted: bool) -> dict[str, object]:
    return {"interrupted": interrupted, "lines": [
        {"bus": ln.name, "port": ln.port, "baudrate": ln.baudrate, "parity": ln.parity, "devices": [
            {"name": name, "address": d.address, "profile": d.profile.profile if d.profile else None,
             "answer": d.answer,
             "fits": [{"profile": f.profile, "plausible": f.plausible, "of": f.of, "why_not": f.why_not}
                      for f in d.fits]} for name, d in ln.devices]} for ln in lines]}


def starter(lines: list[Line], site_id: str, timezone: str) -> str:
    """`plume init`'s starter site file holding the first line found, with the other lines' buses and devices
    added to its lists."""
    from gateway.site.starter import StarterDevice, starter_site

    head = lines[0]
    text = starter_site(site_id, timezone, port=head.port, tcp=None, baudrate=head.baudrate, parity=head.parity,
                        devices=[StarterDevice(n, d.profile.profile, d.address) for n, d in head.devices
                                 if d.profile is not None])
    text = text.replace("name: rs485\n", f"name: {head.name}\n").replace("bus: rs485\n", f"bus: {head.name}\n")
    more_buses = "".join(f"  - {{name: {ln.name}, type: rtu, port: {ln.port}, baudrate: {ln.baudrate}, "
                         f"parity: {ln.parity}}}\n" for ln in lines[1:])
    more_devices = "".join(f"  - {{name: {n}, bus: {ln.name}, address: {d.address}, profile: {d.profile.profile}, "
                           f"poll_interval_s: 10}}\n" for ln in lines[1:] for n, d in ln.devices
                           if d.profile is not None)
    text = text.replace("\ndevices:\n", f"{more_buses}\ndevices:\n", 1)
    return text.replace("\nstore:\n", f"{more_devices}\nstore:\n", 1)
