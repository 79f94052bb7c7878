#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Strict checker of the Prometheus text exposition format 0.0.4
(https://prometheus.io/docs/instrumenting/exposition_formats/), for tests. Reads a file (or
stdin with "-"), prints one line per error and exits 1 if there is any.

Checked: line syntax (names, label names, label value escapes \\\\ \\" \\n, float values with
NaN/+Inf/-Inf, optional integer timestamp); HELP text escapes; TYPE values; at most one HELP
and one TYPE per family, both before its first sample; a family's lines contiguous (each family
once); no duplicate label names in a sample; no duplicate series; counters non-negative and not
NaN; a final newline; no "__" label names. --require-help (our convention): every family has
HELP and TYPE. As a module: parse(text) -> (families, errors)."""
import math
import re
import sys

NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
TYPES = ("counter", "gauge", "histogram", "summary", "untyped")
SUFFIXES = ("_bucket", "_count", "_sum")


def parse_value(s):
    if s in ("NaN", "+Inf", "-Inf", "Inf", "+inf", "-inf", "inf", "nan"):
        return float(s.replace("Inf", "inf").replace("NaN", "nan"))
    if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", s):
        raise ValueError("bad value %r" % s)
    return float(s)


def parse_labels(s, i):
    """s[i] == '{'. Returns (dict, index after '}')."""
    labels = {}
    i += 1
    while True:
        if i < len(s) and s[i] == "}":
            return labels, i + 1
        m = LABEL.match(s, i)
        if not m:
            raise ValueError("bad label name at column %d" % (i + 1))
        name = m.group(0)
        if name.startswith("__"):
            raise ValueError("reserved label name %r" % name)
        if name in labels:
            raise ValueError("duplicate label %r" % name)
        i = m.end()
        if s[i:i + 2] != '="':
            raise ValueError("expected =\" after label %r" % name)
        i += 2
        val = []
        while True:
            if i >= len(s):
                raise ValueError("unterminated label value")
            c = s[i]
            if c == "\\":
                nxt = s[i + 1:i + 2]
                if nxt not in ("\\", '"', "n"):
                    raise ValueError("bad escape \\%s in label value" % nxt)
                val.append({"\\": "\\", '"': '"', "n": "\n"}[nxt])
                i += 2
            elif c == '"':
                i += 1
                break
            else:
                val.append(c)
                i += 1
        labels[name] = "".join(val)
        if i < len(s) and s[i] == ",":
            i += 1
        elif i < len(s) and s[i] == "}":
            continue
        else:
            raise ValueError("expected , or } after label value")


def family_of(name, types):
    if name in types:
        return name
    for suf in SUFFIXES:
        if name.endswith(suf) and types.get(name[:-len(suf)]) in ("histogram", "summary"):
            return name[:-len(suf)]
    return name


def parse(text, require_help=False):
    errors, fams = [], {}
    types, helps, seen_samples, done, series = {}, {}, set(), set(), set()
    current = None
    if text and not text.endswith("\n"):
        errors.append("no final newline")

    def enter(fam, ln):
        nonlocal current
        if fam != current:
            if fam in done:
                errors.append("line %d: family %s appears again (not contiguous)" % (ln, fam))
            if current is not None:
                done.add(current)
            current = fam
        fams.setdefault(fam, [])

    for ln, line in enumerate(text.split("\n")[:-1] if text.endswith("\n") else
                              text.split("\n"), 1):
        if line.strip() == "":
            continue
        if line.startswith("#"):
            parts = line.split(None, 3)
            if len(parts) >= 2 and parts[1] in ("HELP", "TYPE"):
                if len(parts) < 3 or not NAME.fullmatch(parts[2]):
                    errors.append("line %d: bad metric name in %s" % (ln, parts[1]))
                    continue
                fam = parts[2]
                enter(fam, ln)
                rest = parts[3] if len(parts) > 3 else ""
                if parts[1] == "HELP":
                    if fam in helps:
                        errors.append("line %d: second HELP for %s" % (ln, fam))
                    if re.search(r"\\[^\\n]|\\$", rest):
                        errors.append("line %d: bad escape in HELP of %s" % (ln, fam))
                    helps[fam] = rest
                else:
                    if fam in types:
                        errors.append("line %d: second TYPE for %s" % (ln, fam))
                    if rest not in TYPES:
                        errors.append("line %d: bad TYPE %r" % (ln, rest))
                    if fam in seen_samples:
                        errors.append("line %d: TYPE of %s after its samples" % (ln, fam))
                    types[fam] = rest
            continue
        m = NAME.match(line)
        if not m:
            errors.append("line %d: bad metric name" % ln)
            continue
        name, i, labels = m.group(0), m.end(), {}
        try:
            if i < len(line) and line[i] == "{":
                labels, i = parse_labels(line, i)
            if i >= len(line) or line[i] != " ":
                raise ValueError("expected a space before the value")
            rest = line[i + 1:].split(" ")
            if len(rest) not in (1, 2) or rest[0] == "":
                raise ValueError("expected value [timestamp]")
            value = parse_value(rest[0])
            if len(rest) == 2 and not re.fullmatch(r"-?\d+", rest[1]):
                raise ValueError("bad timestamp %r" % rest[1])
        except ValueError as e:
            errors.append("line %d: %s" % (ln, e))
            continue
        fam = family_of(name, types)
        enter(fam, ln)
        seen_samples.add(fam)
        key = (name, tuple(sorted(labels.items())))
        if key in series:
            errors.append("line %d: duplicate series %s%s" % (ln, name, labels))
        series.add(key)
        if types.get(fam) == "counter" and (math.isnan(value) or value < 0):
            errors.append("line %d: counter %s is %r" % (ln, name, value))
        fams[fam].append((name, labels, value))
    if require_help:
        for fam in fams:
            if fam not in helps or fam not in types:
                errors.append("family %s lacks HELP or TYPE" % fam)
    return fams, errors


def main():
    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    text = sys.stdin.read() if not args or args[0] == "-" else open(args[0]).read()
    _, errors = parse(text, "--require-help" in sys.argv)
    for e in errors:
        print(e)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
