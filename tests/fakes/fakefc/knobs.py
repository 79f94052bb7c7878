# SPDX-License-Identifier: MIT
"""Misbehaviour knobs: a JSON file named by $FAKE_FC_KNOBS, read once at process start.

Either a flat object (applies to every VM) or {"default": {...}, "by_id": {"<id>": {...}}};
the by_id entry of the instance id is merged over "default" key by key.
"""
import json
import os
import sys

KNOWN = {
    "crash_after_start_ms", "crash_exit_code", "crash_signal", "hang_on", "ignore_ctrl_alt_del",
    "refuse", "boot_delay_ms", "exit_on_start", "agent_cmd", "agent_env", "agent_ports",
    "ctrl_alt_del_exit_ms", "api_delay_ms", "exit_on_ctrl_alt_del_code", "crash_on",
    "swap_links", "swap_after_ms", "guest_touch_mib", "guest_dirty_mib",
}


def read_file(env=None):
    """The raw knob document, or {} when unset. Errors go to stderr (a test bug, made loud)."""
    env = os.environ if env is None else env
    path = env.get("FAKE_FC_KNOBS")
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
    except (OSError, ValueError) as e:
        sys.stderr.write("fake-firecracker: cannot read knobs %s: %s\n" % (path, e))
        return {}
    return doc if isinstance(doc, dict) else {}


def select(doc, vm_id):
    if "default" in doc or "by_id" in doc:
        k = dict(doc.get("default") or {})
        k.update((doc.get("by_id") or {}).get(vm_id) or {})
    else:
        k = dict(doc)
    unknown = set(k) - KNOWN
    if unknown:
        sys.stderr.write("fake-firecracker: unknown knobs ignored: %s\n" % sorted(unknown))
    return k


def matches(spec, method, path, action=None):
    """Does a knob key/list ("PUT /actions", "PUT /actions InstanceStart", "InstanceStart",
    "GET /") name this request?"""
    if spec is None or spec is False:
        return False
    items = spec if isinstance(spec, list) else [spec]
    keys = {"%s %s" % (method, path)}
    if action:
        keys.add("%s %s %s" % (method, path, action))
        keys.add(action)
    return any(i in keys for i in items)


def lookup(mapping, method, path, action=None):
    """refuse-style map lookup: most specific key first."""
    if not isinstance(mapping, dict):
        return None
    for key in ([action, "%s %s %s" % (method, path, action)] if action else []) + \
            ["%s %s" % (method, path)]:
        if key and key in mapping:
            return mapping[key]
    return None
