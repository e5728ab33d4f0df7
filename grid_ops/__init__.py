"""grid-ops: Ansible-backed provisioning and ops for small GPU clusters running Ray."""

__version__ = "0.1.0"
