"""hzp2p.sim."""
