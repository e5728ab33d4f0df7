#!/usr/bin/python3
"""Ansible module: make grid-ops' directories under remote_root noting each one made in the
node's manifest, or take back (reset) only what the manifest names."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: grid_paths
short_description: Make grid-ops' directories (noted in the node's manifest), or remove only those
description:
  - With C(state=present), makes remote_root, its state dir and each of C(dirs) that is
    missing, and notes in the node's manifest (the layout's C(manifest), in the state dir)
    each one it made; one that was there is left as it is (given C(mode) when C(enforce)).
  - With C(state=absent), removes what the manifest names (on a node an older grid-ops
    provisioned, what grid-ops' own markers show is its own), the node user's short dir
    likewise, then remote_root if grid-ops made it and it is empty. Everything else stays
    and is named in the fact C(grid_reset) with the reason.
  - The logic is grid_ops/module_utils/grid_manifest.py, which the grid-ops runtime on the
    nodes uses too. Runs with the node's own Python 3 standard library.
options:
  root:
    description: remote_root as the node expanded it (grid_node.root).
    type: str
    required: true
  layout:
    description: The grid-ops layout (the group variable grid_layout).
    type: dict
    required: true
  state:
    description: present (make and note) or absent (take back what grid-ops made).
    type: str
    choices: [present, absent]
    default: present
  dirs:
    description: >-
      With state=present, the directories under remote_root to make: name (a top-level
      name of the layout, or . for remote_root), mode (octal text) and enforce (give an
      existing one the mode too).
    type: list
    elements: dict
    default: []
author:
  - grid-ops
"""

EXAMPLES = r"""
- name: Make the runtime directory, noting it in the manifest if it is made now
  grid_paths:
    root: "{{ grid_node.root }}"
    layout: "{{ grid_layout }}"
    dirs: [{name: lib, mode: "0755", enforce: true}]
"""

RETURN = r"""
made:
  description: What was made or changed (state=present; with check mode, what would be).
  type: list
  returned: state=present
ansible_facts:
  description: >-
    C(grid_reset) (state=absent): removed (the entries removed: top-level names, . for
    remote_root, the short dir's path), kept (name, path and reason of each that stays)
    and errors.
  type: dict
  returned: state=absent
"""

from ansible.module_utils.basic import AnsibleModule
from ansible.module_utils.grid_manifest import ManifestError, make_dirs, take_back

DIR_SPEC = {
    "name": {"type": "str", "required": True},
    "mode": {"type": "str", "required": True},
    "enforce": {"type": "bool", "default": True},
}


def main() -> None:
    module = AnsibleModule(
        argument_spec={
            "root": {"type": "str", "required": True},
            "layout": {"type": "dict", "required": True},
            "state": {"type": "str", "default": "present", "choices": ["present", "absent"]},
            "dirs": {"type": "list", "elements": "dict", "default": [], "options": DIR_SPEC},
        },
        supports_check_mode=True,
    )
    root = module.params["root"]
    names = module.params["layout"]
    check = module.check_mode
    if not root.startswith("/"):
        module.fail_json(msg=f"remote_root must be expanded to an absolute path (got {root!r})")
    try:
        if module.params["state"] == "present":
            made = make_dirs(root, names, module.params["dirs"], check=check)
            module.exit_json(changed=bool(made), made=made)
        report = take_back(root, names, check=check)
    except KeyError as exc:
        module.fail_json(
            msg=f"The inventory's grid_layout lacks {exc}: render the inventory from the "
            "cluster config again (grid-ops inventory render -c CONFIG)."
        )
    except (ManifestError, OSError, ValueError) as exc:
        module.fail_json(msg=f"{root}: {exc}")
    facts = {k: report[k] for k in ("removed", "kept", "errors")}
    if report["errors"]:
        module.fail_json(
            msg="could not remove all of grid-ops' files: " + "; ".join(report["errors"][:5]),
            ansible_facts={"grid_reset": facts},
        )
    module.exit_json(changed=report["changed"], ansible_facts={"grid_reset": facts})


if __name__ == "__main__":
    main()
