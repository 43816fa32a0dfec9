"""hzp2p.node."""
