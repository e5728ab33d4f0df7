"""Code that runs on the nodes as Ansible module_utils and inside grid-ops alike."""
