"""Site assembly: the one place a site file becomes a running site's description.

`load_site(path)` (gateway.site.load) reads the YAML, validates it against the schema (gateway.config), resolves
each device's profile, runs every cross-section check once and returns a `Site` (gateway.site.model) carrying
what those checks resolved: the devices with their profiles, the alarm rules (site rules plus packs), each
uplink's routes and the registry of log consumers. `plume run`, `plume demo`, `plume config check` and the tests
all build a site this way.

This package may import the schema and the features whose sections it checks; no feature imports it back except
for the `Site`/`ResolvedDevice` types (gateway.site.model), and this `__init__` imports nothing so that doing so
never loads the checks.
"""
