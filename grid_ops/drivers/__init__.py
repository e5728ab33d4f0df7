"""The drivers: how grid-ops reaches the nodes from the operator's machine."""
