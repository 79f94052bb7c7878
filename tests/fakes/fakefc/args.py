# SPDX-License-Identifier: MIT
"""Firecracker's utils::arg_parser rules and the instance id validator."""


class ArgError(Exception):
    pass


class Spec:
    def __init__(self, takes_value=True, required=False, default=None, multiple=False):
        self.takes_value = takes_value or multiple
        self.required = required
        self.default = default
        self.multiple = multiple


def parse(specs, argv):
    """argv without argv[0]. Returns (values dict, extra args after `--`)."""
    vals = {}
    extra = []
    i = 0
    while i < len(argv):
        tok = argv[i]
        i += 1
        if tok == "--":
            extra = argv[i:]
            break
        if not tok.startswith("--"):
            raise ArgError("Found argument '%s' which wasn't expected, or isn't valid in this "
                           "context." % tok)
        name = tok[2:]
        spec = specs.get(name)
        if spec is None:
            raise ArgError("Found argument '%s' which wasn't expected, or isn't valid in this "
                           "context." % name)
        if name in vals and not spec.multiple:
            raise ArgError("The argument '%s' was provided more than once." % name)
        if spec.takes_value:
            if i >= len(argv) or argv[i].startswith("--"):
                raise ArgError("The argument '%s' requires a value, but none was supplied." % name)
            v = argv[i]
            i += 1
            if spec.multiple:
                vals.setdefault(name, []).append(v)
            else:
                vals[name] = v
        else:
            vals[name] = True
    if "help" not in vals and "version" not in vals:
        for name, spec in specs.items():
            if spec.required and name not in vals:
                raise ArgError("Argument '%s' required, but not found." % name)
    for name, spec in specs.items():
        if name not in vals and spec.default is not None:
            vals[name] = spec.default
    return vals, extra


def validate_instance_id(s):
    """utils::validators::validate_instance_id; returns an error text or None."""
    n = len(s.encode())
    if n < 1 or n > 64:
        return "Invalid len (%d);  the length must be between 1 and 64" % n
    for i, c in enumerate(s):
        if not (c == "-" or c.isalnum()):
            return "Invalid char (%s) at position %d" % (c, i)
    return None
