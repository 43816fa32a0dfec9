"""hzp2p.sim: the deterministic fault simulator (VOPR-style) and the `hzp2p fuzz` runner.

One seeded, single-threaded event loop in virtual time drives many pure Raft
cores, a model network, model durable stores and clients, and checks Raft's
safety properties after every step. Layout:

- `events`: the virtual-time event queue and RNG derivation.
- `network`: per-message delay / drop / duplicate, partitions, one-way links.
- `store`: the model durable store (only completed persists survive a crash).
- `statemachine`: the pluggable applier; the default is a dedupe-by-request-id KV.
- `node`: drives one core exactly per the Ready contract (hzp2p.raft.ready).
- `clients`: clients that find the leader, retry and record acknowledgements.
- `checkers`: the safety checkers and `SimulationFailure`.
- `faults`: fault profiles and the random fault schedule.
- `simulation`: one run (safety phase, then liveness phase) for one seed.
- `fuzz` / `cli`: many seeds, multiprocessing, `hzp2p fuzz`.
- `scenario`, `ledger_sm`, `engine_det`, `relay`, `engine_live`, `record`, `report`,
  `sweep`, `sim_cli`: `hzp2p sim SCENARIO.toml` (docs/simulations.md) -- scenario files,
  the ledger on this loop, real daemons behind a fault-injecting relay, reports, the sweep.
"""
