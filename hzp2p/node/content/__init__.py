"""Data-set content off chain: the content store, delivery between nodes, the admin handlers."""
