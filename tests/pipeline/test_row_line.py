"""A backlog drains from the stored rows (issue 12): a reading read back from the log's database becomes its
InfluxDB line and its MQTT data message from the row's value texts when it is the usual poll (every channel a
finite float with flag N, no error, no note), without a ChannelValue per value (decoding was ~48 % of an InfluxDB
drain's CPU). Point and message must be what the decoded reading gives, for any reading; other rows are decoded
as before."""

from __future__ import annotations

import asyncio
import math
from pathlib import Path
from typing import Any

from hypothesis import example, given, settings
from hypothesis import strategies as st

from gateway.core.model import ChannelValue, DeviceReading, Flag
from gateway.sinks.config import InfluxSinkConfig
from gateway.sinks.contract import data_payload, stored_data_payload
from gateway.sinks.influx import InfluxSink, record_line
from gateway.sinks.lineproto import reading_line, row_line
from gateway.sinks.mqtt import MqttSink
from gateway.store.codec import Schema, decode, decode_stored, encode, schema_key
from gateway.store.config import StoreConfig
from gateway.store.log import DurableLog
from gateway.store.records import ReadingRecord, StoredReading

from .helpers import reading
from .servers import InfluxDB, Mosquitto, MqttCollector, wait_for
from .test_influx_sink import deliver, v1_sink
from .test_mqtt_sink import mqtt_cfg, until

T0 = 1_767_225_600_000

values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.floats(min_value=-1e6, max_value=1e6).map(lambda v: round(v, 1)),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.none(), st.booleans(), st.text(max_size=5),
)
channels = st.dictionaries(st.from_regex(r"[a-z][a-z0-9_ ,=]{0,6}", fullmatch=True),
                           st.tuples(values, st.sampled_from(list(Flag))), min_size=0, max_size=6)


def stored(r: DeviceReading) -> StoredReading:
    key = schema_key(r)
    layout = Schema(7, *key)
    rid, ts, seq, _, flags, vals, extra = encode(1, 3, 7, r)
    return StoredReading(rid, ts, r.site, seq, layout, flags, vals, extra)


@settings(max_examples=400, deadline=None)
@given(channels, st.sampled_from(["dust", "cems x"]), st.sampled_from(["d1", "stack 1"]), st.booleans())
@example({"pm10": (-0.0, Flag.N), "tsp": (1e16, Flag.N), "t": (1.5e-05, Flag.N)}, "dust", "d1", True)
@example({"n": (7, Flag.N)}, "dust", "d1", True)  # an int: a JSON int, not a float text
@example({"b": (True, Flag.N)}, "dust", "d1", True)  # "true" has an "e" in it
@example({"pm10": (41.5, Flag.N)}, "dust", "d1", False)  # a failed poll keeps its error: decoded
def test_the_point_and_message_from_the_row_are_those_of_the_decoded_reading(
    chans: dict[str, tuple[Any, Flag]], kind: str, device: str, ok: bool
) -> None:
    r = DeviceReading("site-1", device, kind, T0, {ch: ChannelValue(v, "ug/m3", f) for ch, (v, f) in chans.items()},
                      ok=ok, error="" if ok else "fc3@0+1: timeout")
    rec = stored(r)
    back = decode(rec.layout, rec.ts, rec.flags, rec.vals, rec.extra)
    expected = reading_line(back)
    fast = row_line(rec)
    assert fast is None or fast == expected
    message = stored_data_payload(rec)
    assert message is None or message == data_payload(decode_stored(rec))
    plain = all(type(v) is float and math.isfinite(v) and f is Flag.N for v, f in chans.values())
    if plain and chans and ok:
        assert fast is not None and message is not None, "the usual poll takes the row's texts"
    assert record_line(rec) == expected  # what the sink writes, either way
    assert record_line(decode_stored(rec)) == expected


async def test_a_backlog_read_back_from_the_database_gives_the_same_points(tmp_path: Path,
                                                                          influxdb: InfluxDB) -> None:
    """The same readings delivered from the in-memory tail (just committed) and from the database (after a
    restart): the same points, the unusual ones (no value, NaN, text, an int, a flag other than N) included."""
    path = tmp_path / "log.sqlite"
    log = DurableLog(path, StoreConfig())
    await log.open(["live"])
    log.append(DeviceReading("test-site", "dust-1", "dust", T0, {
        "pm10": ChannelValue(41.5, "ug/m3", Flag.N), "tsp": ChannelValue(None, "ug/m3", Flag.B, "timeout"),
        "count": ChannelValue(7, "", Flag.C),  # type: ignore[arg-type]
        "serial": ChannelValue("AB 12", "", Flag.N), "bad": ChannelValue(float("nan"), "mg/m3", Flag.D),
    }, ok=False, error="fc3@0+5: timeout"))
    for i in range(1, 300):
        log.append(reading(f"d{i % 4}", T0 + i * 250))
    await deliver(v1_sink(influxdb, log, "live"), log)
    await log.close()

    log = DurableLog(path, StoreConfig())
    await log.open(["live", "replay"])  # a new sink reads everything back from the database
    read_back = await log.read(0, 10, rows=True)
    assert all(isinstance(r, StoredReading) for r in read_back), "from the database, rows were asked for"
    assert isinstance((await log.read(0, 1))[0], ReadingRecord), "a reader that did not ask gets readings"
    cfg = InfluxSinkConfig(type="influx", name="replay", url=influxdb.url, database="replay", linger_ms=0)
    replay = InfluxSink(cfg, "test-site", log)
    await deliver(replay, log)
    assert replay.consumer.delivered == 300
    assert replay.consumer.delivered_values == 5 + 299 * 3
    await log.close()
    for measurement in ("dust",):
        assert influxdb.rows(measurement, db="replay") == influxdb.rows(measurement)
    assert len(influxdb.rows("dust", db="replay")) == 300


async def test_an_mqtt_backlog_read_back_from_the_database_gives_the_same_messages(tmp_path: Path,
                                                                                  mosquitto: Mosquitto) -> None:
    collector = MqttCollector(mosquitto.port, "plume/#")
    path = tmp_path / "log.sqlite"
    log = DurableLog(path, StoreConfig())
    await log.open(["live"])
    log.append(DeviceReading("test-site", "dust-1", "dust", T0, {
        "pm10": ChannelValue(41.5, "ug/m3", Flag.N), "tsp": ChannelValue(None, "ug/m3", Flag.B, "timeout"),
    }, ok=False, error="fc3@0+5: timeout"))
    for i in range(1, 200):
        log.append(reading(f"d{i % 4}", T0 + i * 250))
    await log.flush()
    for name in ("live", "replay"):
        if name == "replay":
            await log.close()
            log = DurableLog(path, StoreConfig())
            await log.open(["live", "replay"])  # the new sink reads everything back from the database
            assert isinstance((await log.read(0, 1, rows=True))[0], StoredReading)
        sink = MqttSink(mqtt_cfg(mosquitto.port, name=name), "test-site", log)
        task = asyncio.create_task(sink.run())
        await until(lambda s=sink: s.consumer.acked == 200, what=f"{name}: 200 PUBACKs")
        assert sink.consumer.delivered_values == 2 + 199 * 3
        log.begin_close()
        await asyncio.wait_for(task, 5)
        expected = 200 if name == "live" else 400
        wait_for(lambda n=expected: len([t for t, _, _ in collector.snapshot() if t.endswith("/data")]) == n, 10,
                 f"{name}: 200 data messages")
    await log.close()
    data = [(t, p) for t, p, _ in collector.snapshot() if t.endswith("/data")]
    collector.close()
    assert data[200:] == data[:200], "the same topics and bytes, in the same order"
