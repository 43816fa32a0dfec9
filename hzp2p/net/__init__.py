"""hzp2p.net."""
