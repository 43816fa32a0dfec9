"""hzp2p.ledger."""
