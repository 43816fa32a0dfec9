"""hzp2p.contracts."""
