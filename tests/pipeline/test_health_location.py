"""The site's location reaches InfluxDB with the health points, for the city overview map."""

from __future__ import annotations

from gateway.sinks.lineproto import health_lines


def test_site_location_is_a_plume_site_point():
    snap = {"site": "demo-site", "devices": {}, "sinks": {},
            "location": {"lat": 31.2304, "lon": 121.4737, "name": "Riverside Tower"}}
    assert health_lines(snap, 1000) == [
        'plume_site,site=demo-site lat=31.2304,lon=121.4737,name="Riverside Tower" 1000']


def test_no_location_no_point():
    assert health_lines({"site": "s", "devices": {}, "sinks": {}}, 1000) == []
