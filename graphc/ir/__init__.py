"""The graph IR: dtypes, array conversion, immutable nodes and graphs (the
verifier, which needs the ops' rules, is passes/verify.py)."""
