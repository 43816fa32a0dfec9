"""hzp2p.tools: what runs beside the product, never inside it.

scaffold (`hzp2p init`: a ready local consortium), localcluster (real daemon
processes for the demo, the integration tests and benchmarks), demo (`hzp2p
demo`), bench (`python -m hzp2p.tools.bench`), testkit (an in-memory chain for
tests, benchmarks and the simulator) and cli (the `init` and `demo` commands).
Production code (hzp2p.node, admin, contracts, ...) never imports this package;
the layers contract in pyproject.toml (`lint-imports`) checks it.
"""
