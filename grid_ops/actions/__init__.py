"""The use cases: what a command does, below the CLI.

One module per use case (playbooks, nodes, health, status, ...). Each function takes the
cluster config (its resolved model is built once per config, grid_ops.model.of), the
config's path where a playbook run needs it, and a :class:`~grid_ops.actions.progress.
Progress` for what it has to say while it works; it returns a result and prints nothing.
The CLI (grid_ops.cli), the API server (grid_ops.server) and the demo call these and
present the result. This package never imports grid_ops.cli or grid_ops.server.
"""
