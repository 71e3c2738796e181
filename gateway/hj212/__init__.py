"""HJ 212 (2017 / 2025): the codec, the `plume hj212` tools and the uplink to regulator platforms."""
