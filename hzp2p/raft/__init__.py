"""The sans-IO Raft core: pure, deterministic, driven by ticks and messages.

See `hzp2p.raft.ready` for the contract a driver follows and
`hzp2p.raft.core.RaftCore` for the state machine itself.
"""
