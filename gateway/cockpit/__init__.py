"""The site's own cockpit: a small web page and a local JSON API served by `plume run` (off unless the site file
enables it), for the installer and the site manager on the gateway's LAN, and the `plume status` / `plume alarms` /
`plume log tail` views that talk to the same API over loopback."""
