"""hzp2p.crypto: client-side record encryption (per-record keys sealed to their holders)."""
