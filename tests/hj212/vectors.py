"""The two public HJ 212 test vectors of domain.md (length and CRC verified), as they travel (with CR LF)."""

from __future__ import annotations

# The standard's own example (its prose misprints the CRC as 1C08).
V1062 = (b"##0101QN=20160801085857223;ST=32;CN=1062;PW=100000;MN=010000A8900016F000169DC0;Flag=5;"
         b"CP=&&RtdInterval=30&&1C80\r\n")
# A construction-dust 2011 packet seen in the wild.
V2011 = (b"##0239QN=20180821142509000;ST=39;CN=2011;PW=123456;MN=690000D5800028F889221AC0;Flag=4;"
         b"CP=&&DataTime=20180821142509;a34004-Rtd=0.0;a34002-Rtd=0.0;a34001-Rtd=0.0;LA-Rtd=0.0;a01001-Rtd=0.0;"
         b"a01002-Rtd=0.0;a01006-Rtd=0.0;a01007-Rtd=0.0;a01008-Rtd=0&&E541\r\n")
VECTORS = (V1062, V2011)
