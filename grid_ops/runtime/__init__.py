"""The grid-ops runtime: the only code that imports Ray. It runs on the cluster, from the
node venvs that ``grid-ops provision`` builds, never in the CLI process."""
