"""The gateway process in `hzp2p demo`: the node's operator starts `hzp2p gateway --config`.

Every daemon of the demo's cluster gets a [gateway] section (and a credential key) before
it starts, so that it shares its database and any of them can host the gateway; once
the killed node is back, the operator of a live node starts the gateway process. What
Alice's phone, the hospital's records client and a venue's scanner then do over it are
`hzp2p citizen`, `hzp2p institution`, `hzp2p venue trust-list` and `hzp2p verify-code`
commands in the story (hzp2p.tools.demo_story): no step of the story calls Python here.
"""

from __future__ import annotations

from hzp2p.tools.gatewayrun import Gateway, GatewayStartError, add_gateway, launch_gateway
from hzp2p.tools.localcluster import ClusterError, LocalCluster


class DemoHttpFailed(ClusterError):
    """The gateway did not start (the demo reports it as it reports a cluster failure)."""


class DemoGateway:
    """The gateway process of one of the cluster's nodes."""

    def __init__(self, cluster: LocalCluster) -> None:
        self.cluster = cluster
        # every daemon shares its database from the start: any of them may host the gateway
        self.ports = {k: add_gateway(cluster, k) for k in cluster.ids}
        self.gw: Gateway | None = None

    def start_gateway(self, node: int) -> tuple[str, str]:
        """`hzp2p gateway --config` for `node`; (its URL, its credential public key hex)."""
        try:
            self.gw = launch_gateway(self.cluster, node, self.ports[node])
        except GatewayStartError as exc:
            raise DemoHttpFailed(str(exc)) from None
        return self.gw.base_url, self.gw.credential_public_key().hex()

    def stop(self) -> None:
        if self.gw is not None:
            self.gw.stop()
            self.gw = None
