"""hzp2p: a permissioned Raft ledger for public-health institutions."""

__version__ = "0.1.0"
