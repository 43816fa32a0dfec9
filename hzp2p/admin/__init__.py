"""hzp2p.admin."""
