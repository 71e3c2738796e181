"""The fast paths of the MQTT data message and the InfluxDB line (a finite float with flag N, a channel's text
and a device's header kept from earlier readings) give exactly the plain encoding, over many readings that share
channel names with different units, flags, notes and values (-0.0, NaN, infinities, huge and tiny floats)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.sinks.contract import data_payload
from gateway.sinks.lineproto import reading_line
from gateway.store.records import ReadingRecord
from tests.pipeline.test_payload_text import reference, reference_line

floats = st.floats() | st.sampled_from([-0.0, 0.0, 1e16, 1e-05, 1e22, 5e-324, 123456789.125, 41.0])
value = st.one_of(floats, floats, floats, st.none(), st.integers(-10**20, 10**20), st.booleans(), st.text(max_size=3))
flag = st.sampled_from([Flag.N, Flag.N, Flag.N, *Flag])
channel = st.tuples(st.sampled_from(["pm10", "pm2.5", "a b", 'q"', "x,y=z", "\u00e9"]), value,
                    st.sampled_from(["ug/m3", "mg/m3", "", '"u"']), flag, st.sampled_from(["", "", "note \"n\""]))
reading = st.tuples(st.sampled_from(["dev-1", "dev 2", "d,3"]), st.sampled_from(["dust", "cems"]),
                    st.lists(channel, max_size=8), st.booleans(), st.sampled_from(["", "timeout"]))


@settings(max_examples=200, deadline=None)
@given(st.lists(reading, min_size=1, max_size=6), st.integers(0, 2**45))
def test_the_fast_message_and_line_equal_the_plain_ones(readings: list[tuple[str, str, list[tuple[
        str, object, str, Flag, str]], bool, str]], ts: int) -> None:
    for n, (device, kind, chs, ok, error) in enumerate(readings):
        cvs = {ch: ChannelValue(v, unit, f, note) for ch, v, unit, f, note in chs}  # type: ignore[arg-type]
        r = DeviceReading("site 1", device, kind, ts + n, cvs, ok, error)
        record = ReadingRecord(n + 1, r.ts, r.site, n + 1, r)
        assert data_payload(record) == reference(record)
        assert reading_line(r) == reference_line(r)
