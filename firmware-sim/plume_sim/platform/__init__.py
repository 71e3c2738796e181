"""An HJ 212 platform (the regulator's receiver) for tests: strict, recording, and able to misbehave.

    async with PlatformSim(host="127.0.0.1", port=0) as p:
        ...  # point a logger at p.port
        await p.wait_for(lambda r: r.cn == "2011")
        p.misbehave("no-answer")
        ex = await p.command("1062", {"RtdInterval": 30})
"""

from plume_sim.platform.records import Exchange, Received
from plume_sim.platform.server import MISBEHAVIOURS, PlatformSim

__all__ = ["MISBEHAVIOURS", "Exchange", "PlatformSim", "Received"]
