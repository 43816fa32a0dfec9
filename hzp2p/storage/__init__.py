"""hzp2p.storage."""
