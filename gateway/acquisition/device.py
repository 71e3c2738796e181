"""One device's poll: its read plan, and the words (or errors) of each request turned into a flagged reading."""

from __future__ import annotations

from collections.abc import Sequence

from gateway.acquisition.codec import Decoder, IntDecimal, decode, decoder_for, int_decimal, status_flag
from gateway.acquisition.link import ReadError
from gateway.acquisition.planner import Request, plan_profile
from gateway.core.model import ChannelValue, DeviceReading, Flag, worst_flag
from gateway.profile import RegisterSpec, StatusSpec
from gateway.site.model import ResolvedDevice

# (channel, slice start, slice end, its decoder) or, for a status register, (the register, start, end, None)
Step = tuple[str | StatusSpec, int, int, Decoder | None]
# A request whose every item is a one-register decimal integer channel (gateway.acquisition.codec.int_decimal), as
# most dust, weather and analyser blocks are: (words it needs, ((channel, index, signed, K, P, unit, min, max), ...)).
Batch = tuple[int, tuple[tuple[str, int, bool, int, int, str, float | None, float | None], ...]]
_NORMAL = Flag.N
_new = object.__new__
ERROR_FLAG = {"timeout": Flag.B, "garbled": Flag.B, "link": Flag.B, "exception": Flag.D}


class DeviceDecoder:
    """Knows a device's plan and how to turn request results into a DeviceReading."""

    def __init__(self, site_id: str, device: ResolvedDevice):
        self.site_id = site_id
        self.device = device
        self.name = device.name
        self.profile = device.profile
        self.kind = device.profile.kind
        self.plan: list[Request] = plan_profile(device.profile) if device.profile.protocol == "modbus" else []
        self._decoders: dict[str, Decoder] = {r.channel: decoder_for(r) for r in device.profile.registers}
        self._channels = tuple(r.channel for r in device.profile.registers)
        self._steps: dict[int, tuple[Request, tuple[Step, ...]]] = {}  # id(request) -> (request, its steps)
        self._batches: dict[int, tuple[Request, Batch | None]] = {}  # id(request) -> (request, its batch or None)
        self._ints: dict[str, IntDecimal | None] = {r.channel: int_decimal(r) for r in device.profile.registers}
        self.narrowed: list[str] = []  # requests split at run time because the device refused to read across gaps

    def reading(self, ts: int, results: Sequence[tuple[Request, list[int] | ReadError]]) -> DeviceReading:
        values: dict[str, ChannelValue] = {}
        status_flags: list[tuple[StatusSpec, Flag]] = []
        errors: list[str] = []
        for req, result in results:
            if isinstance(result, ReadError):
                errors.append(f"fc{req.function}@{req.address}+{req.count}: {result}")
                flag = ERROR_FLAG[result.kind]
                for it in req.items:
                    if isinstance(it, RegisterSpec):
                        values[it.channel] = ChannelValue(None, it.unit, flag, str(result))
                continue
            batch = self._batches.get(id(req))
            fast = batch[1] if batch is not None and batch[0] is req else self._batch_of(req)
            if fast is not None and len(result) >= fast[0]:
                # the same ChannelValues `decode` gives (tests/acquisition/test_fast_decode.py), in one pass over
                # the words, without a slice, a closure call or round() per value
                for ch, i, signed, k, p, unit, lo, hi in fast[1]:
                    raw = result[i]
                    if signed and raw >= 0x8000:
                        raw -= 0x10000
                    value = raw * k / p
                    if hi is not None and value > hi:
                        values[ch] = ChannelValue(value, unit, Flag.T, f"over range max {hi}")
                    elif lo is not None and value < lo:
                        values[ch] = ChannelValue(value, unit, Flag.D, f"under range min {lo}")
                    else:
                        cv = values[ch] = _new(ChannelValue)
                        cv.value = value
                        cv.unit = unit
                        cv.flag = _NORMAL
                        cv.note = ""
                continue
            known = self._steps.get(id(req))
            steps = known[1] if known is not None and known[0] is req else self._steps_of(req)
            for what, off, end, dec in steps:
                if dec is None:
                    assert isinstance(what, StatusSpec)
                    status_flags.append((what, status_flag(what, result[off:end])))
                else:
                    values[what] = dec(result[off:end])  # type: ignore[index]  # a channel name
        if status_flags:
            self.apply_status(values, status_flags)
        ok = any(not isinstance(r, ReadError) for _, r in results)
        if tuple(values) != self._channels:
            values = self.ordered(values)
        return DeviceReading(self.site_id, self.name, self.kind, ts, values, ok, "; ".join(errors))

    def _steps_of(self, req: Request) -> tuple[Step, ...]:
        """What to do with a request's words, worked out once per request (see Step)."""
        steps = tuple((it, it.address - req.address, it.address - req.address + it.words, None)
                      if isinstance(it, StatusSpec) else
                      (it.channel, it.address - req.address, it.address - req.address + it.words,
                       self._decoders[it.channel]) for it in req.items)
        if len(self._steps) < 256:  # plans are small and fixed; a narrowed plan adds a few requests
            self._steps[id(req)] = (req, steps)  # the request is kept, so its id is not reused
        return steps

    def _batch_of(self, req: Request) -> Batch | None:
        """The batch of a request whose items are all decimal integer channels (None otherwise), worked out once."""
        items: list[tuple[str, int, bool, int, int, str, float | None, float | None]] = []
        for it in req.items:
            info = self._ints.get(it.channel) if isinstance(it, RegisterSpec) and it.words == 1 else None
            if info is None or not isinstance(it, RegisterSpec):
                items = []
                break
            items.append((it.channel, it.address - req.address, *info))
        batch: Batch | None = (max(i[1] for i in items) + 1, tuple(items)) if items else None
        if len(self._batches) < 256:
            self._batches[id(req)] = (req, batch)
        return batch

    def from_frame(self, ts: int, words: list[int]) -> DeviceReading:
        values = {r.channel: decode(r, words[r.address : r.address + r.words]) for r in self.profile.registers}
        return DeviceReading(self.site_id, self.name, self.kind, ts, values)

    def failed(self, ts: int, error: ReadError) -> DeviceReading:
        """A reading that says, channel by channel, that nothing came (flag B or D, no value)."""
        flag = ERROR_FLAG[error.kind]
        values = {r.channel: ChannelValue(None, r.unit, flag, str(error)) for r in self.profile.registers}
        return DeviceReading(self.site_id, self.name, self.kind, ts, values, False, str(error))

    @staticmethod
    def apply_status(values: dict[str, ChannelValue], flags: list[tuple[StatusSpec, Flag]]) -> None:
        for spec, flag in flags:
            if flag is Flag.N:
                continue
            for ch in spec.channels or values.keys():
                cv = values.get(ch)
                if cv is not None and cv.flag is not Flag.B:
                    cv.flag = worst_flag(cv.flag, flag)
                    cv.note = cv.note or f"status register {spec.address} says {flag.value}"

    def ordered(self, values: dict[str, ChannelValue]) -> dict[str, ChannelValue]:
        """Channels in profile order, whatever order the requests came back in."""
        return {r.channel: values[r.channel] for r in self.profile.registers if r.channel in values}
