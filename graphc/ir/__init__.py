"""The graph IR: dtypes, immutable nodes, graphs and their verifier."""
