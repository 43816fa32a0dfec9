"""The gateway: an HTTP API beside an institution's daemon (docs/gateway.md).

`hzp2p gateway --config CFG` runs it (hzp2p.gateway.server): FastAPI routes
(hzp2p.gateway.app) served by Hypercorn's Trio worker, reading committed state
from the node's SQLite database as a WAL reader (hzp2p.gateway.store) and
submitting through the admin socket (hzp2p.gateway.link). Signed requests are
checked by hzp2p.gateway.auth, abuse limits by hzp2p.gateway.limits; the
credentials it issues are hzp2p.credentials'.
"""
