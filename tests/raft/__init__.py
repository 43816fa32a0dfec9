"""Scripted and unit tests of the sans-IO Raft core (hzp2p.raft)."""
