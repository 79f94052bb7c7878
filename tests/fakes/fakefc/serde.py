# SPDX-License-Identifier: MIT
"""A schema-driven JSON deserializer that fails like serde_json + serde derive.

Parsing and validation are interleaved as in serde: the first problem in document order wins,
and its position is "line L column C" of the last character read. Types:
  "str" "path" "bool" "u8" "u16" "u32" "u64" "usize" "any"
  ("opt", T)  ("enum", [variants])  ("vec", T)  ("strmap", T)  ("custom", fn, expecting)  Struct
"""
import json


class SerdeError(Exception):
    pass


class _Late(Exception):
    """A serde custom error raised after the value was read (e.g. MacAddr::deserialize):
    serde_json gives it the position of the enclosing struct's end_map()."""


class Struct:
    def __init__(self, name, fields, deny_unknown=True):
        # fields: list of (name, type, mode) with mode "req" | "default" (missing ok; type as is)
        # | "opt" implied by type ("opt", T)
        self.name = name
        self.fields = fields
        self.deny_unknown = deny_unknown


def _one_of(names):
    q = ["`%s`" % n for n in names]
    if not q:
        return "there are no fields"
    if len(q) == 1:
        return "expected %s" % q[0]
    if len(q) == 2:
        return "expected %s or %s" % (q[0], q[1])
    return "expected one of %s" % ", ".join(q)


_EXPECT = {"str": "a string", "path": "path string", "bool": "a boolean", "u8": "u8",
           "u16": "u16", "u32": "u32", "u64": "u64", "usize": "usize"}
_MAX = {"u8": 255, "u16": 65535, "u32": 2**32 - 1, "u64": 2**64 - 1, "usize": 2**64 - 1}


def _expecting(t):
    if isinstance(t, Struct):
        return "struct %s" % t.name
    if isinstance(t, str):
        return _EXPECT.get(t, "any value")
    k = t[0]
    if k == "opt":
        return "option"
    if k == "enum":
        return "variant identifier"
    if k == "vec":
        return "a sequence"
    if k == "strmap":
        return "a map"
    if k == "custom":
        return t[2]
    return "a value"


class Deser:
    def __init__(self, data):
        self.s = data
        self.i = 0   # index of the next character

    # ---- positions ----
    def err(self, msg, at=None):
        """at: index of the last character read (default: self.i - 1)."""
        idx = (self.i - 1) if at is None else at
        if idx < 0:
            return SerdeError("%s at line 1 column 0" % msg)
        line = self.s.count("\n", 0, idx + 1) + 1
        nl = self.s.rfind("\n", 0, idx + 1)
        col = idx - nl if self.s[idx] != "\n" else 0
        return SerdeError("%s at line %d column %d" % (msg, line, col))

    def peek_err(self, msg):
        return self.err(msg, self.i)

    def ws(self):
        s = self.s
        while self.i < len(s) and s[self.i] in " \t\n\r":
            self.i += 1

    def peek(self):
        self.ws()
        return self.s[self.i] if self.i < len(self.s) else ""

    # ---- lexical pieces ----
    def read_string(self):
        """At an opening quote: return the decoded string; self.i after the closing quote."""
        s = self.s
        j = self.i + 1
        while True:
            if j >= len(s):
                self.i = len(s)
                raise self.err("EOF while parsing a string")
            c = s[j]
            if c == '"':
                break
            if c == "\\":
                j += 2
                continue
            if ord(c) < 0x20:
                self.i = j + 1
                raise self.err("control character (\\u0000-\\u001F) found while parsing a string")
            j += 1
        raw = s[self.i:j + 1]
        self.i = j + 1
        try:
            return json.loads(raw)
        except ValueError:
            raise self.err("invalid escape")

    def read_number(self):
        s = self.s
        j = self.i
        if j < len(s) and s[j] == "-":
            j += 1
        if j >= len(s) or not s[j].isdigit():
            self.i = j + 1
            raise self.err("invalid number")
        if s[j] == "0":
            j += 1
        else:
            while j < len(s) and s[j].isdigit():
                j += 1
        isfloat = False
        if j < len(s) and s[j] == ".":
            isfloat = True
            j += 1
            if j >= len(s) or not s[j].isdigit():
                self.i = j + 1
                raise self.err("invalid number")
            while j < len(s) and s[j].isdigit():
                j += 1
        if j < len(s) and s[j] in "eE":
            isfloat = True
            j += 1
            if j < len(s) and s[j] in "+-":
                j += 1
            if j >= len(s) or not s[j].isdigit():
                self.i = j + 1
                raise self.err("invalid number")
            while j < len(s) and s[j].isdigit():
                j += 1
        text = s[self.i:j]
        self.i = j
        return float(text) if isfloat else int(text)

    def read_ident(self, word):
        for c in word:
            if self.i >= len(self.s):
                raise self.err("EOF while parsing a value")
            if self.s[self.i] != c:
                self.i += 1
                raise self.err("expected ident")
            self.i += 1

    def skip_value(self):
        """Parse any JSON value and return it (used for ignored fields and "any")."""
        c = self.peek()
        if c == "":
            raise self.err("EOF while parsing a value", len(self.s) - 1 if self.s else -1)
        if c == '"':
            return self.read_string()
        if c == "-" or c.isdigit():
            return self.read_number()
        if c == "t":
            self.read_ident("true")
            return True
        if c == "f":
            self.read_ident("false")
            return False
        if c == "n":
            self.read_ident("null")
            return None
        if c == "[":
            self.i += 1
            out = []
            if self.peek() == "]":
                self.i += 1
                return out
            while True:
                out.append(self.skip_value())
                c = self.peek()
                if c == ",":
                    self.i += 1
                    if self.peek() == "]":
                        self.i += 1
                        raise self.err("trailing comma")
                    continue
                if c == "]":
                    self.i += 1
                    return out
                if c == "":
                    raise self.err("EOF while parsing a list", len(self.s) - 1)
                self.i += 1
                raise self.err("expected `,` or `]`")
        if c == "{":
            self.i += 1
            out = {}
            first = True
            while True:
                key = self.next_key(first)
                first = False
                if key is None:
                    return out
                self.colon()
                out[key] = self.skip_value()
        self.i += 1
        raise self.err("expected value")

    def next_key(self, first):
        """Inside an object: return the next key (after its ':' is NOT yet consumed) or None at
        '}' (consumed)."""
        c = self.peek()
        if not first:
            if c == ",":
                self.i += 1
                c = self.peek()
                if c == "}":
                    self.i += 1
                    raise self.err("trailing comma")
            elif c == "}":
                self.i += 1
                return None
            elif c == "":
                raise self.err("EOF while parsing an object", len(self.s) - 1)
            else:
                self.i += 1
                raise self.err("expected `,` or `}`")
        elif c == "}":
            self.i += 1
            return None
        if c == "":
            raise self.err("EOF while parsing an object", len(self.s) - 1)
        if c != '"':
            self.i += 1
            raise self.err("key must be a string")
        return self.read_string()

    def colon(self):
        c = self.peek()
        if c == ":":
            self.i += 1
            return
        if c == "":
            raise self.err("EOF while parsing an object", len(self.s) - 1)
        self.i += 1
        raise self.err("expected `:`")

    def unexpected(self, exp):
        """Consume the value at point and raise serde's invalid type error for it."""
        c = self.peek()
        if c in "[{":
            raise self.err("invalid type: %s, expected %s" % ("sequence" if c == "[" else "map",
                                                               exp))
        v = self.skip_value()
        if v is None:
            raise self.err("invalid type: null, expected %s" % exp)
        if isinstance(v, bool):
            raise self.err("invalid type: boolean `%s`, expected %s" % (str(v).lower(), exp))
        if isinstance(v, int):
            raise self.err("invalid type: integer `%d`, expected %s" % (v, exp))
        if isinstance(v, float):
            r = repr(v)
            if "e" not in r and "." not in r:
                r += ".0"
            raise self.err("invalid type: floating point `%s`, expected %s" % (r, exp))
        raise self.err("invalid type: string %s, expected %s" % (json.dumps(v), exp))

    # ---- typed values ----
    def value(self, t):
        c = self.peek()
        if c == "":
            raise self.err("EOF while parsing a value", len(self.s) - 1 if self.s else -1)
        if isinstance(t, Struct):
            return self.struct(t)
        if isinstance(t, tuple):
            k = t[0]
            if k == "opt":
                if c == "n":
                    self.read_ident("null")
                    return None
                return self.value(t[1])
            if k == "enum":
                if c != '"':
                    # serde_json deserialize_enum: peek_error(ExpectedSomeValue) (the map
                    # form {"Variant": null} is not modelled)
                    self.i += 1
                    raise self.err("expected value")
                v = self.read_string()
                if v not in t[1]:
                    raise self.err("unknown variant `%s`, %s" % (v, _one_of(t[1])))
                return v
            if k == "vec":
                if c != "[":
                    self.unexpected("a sequence")
                self.i += 1
                out = []
                if self.peek() == "]":
                    self.i += 1
                    return out
                while True:
                    out.append(self.value(t[1]))
                    c = self.peek()
                    if c == ",":
                        self.i += 1
                        if self.peek() == "]":
                            self.i += 1
                            raise self.err("trailing comma")
                        continue
                    if c == "]":
                        self.i += 1
                        return out
                    if c == "":
                        raise self.err("EOF while parsing a list", len(self.s) - 1)
                    self.i += 1
                    raise self.err("expected `,` or `]`")
            if k == "strmap":
                if c != "{":
                    self.unexpected("a map")
                self.i += 1
                out = {}
                first = True
                while True:
                    key = self.next_key(first)
                    first = False
                    if key is None:
                        return out
                    self.colon()
                    out[key] = self.value(t[1])
            if k == "custom":
                # ("custom", check, name[, "late"]): check(str) -> error text or None
                v = self.value("str")
                msg = t[1](v)
                if msg:
                    if len(t) > 3 and t[3] == "late":
                        raise _Late(msg)
                    raise self.err(msg)
                return v
        if t == "any":
            return self.skip_value()
        if t in ("str", "path"):
            if c != '"':
                self.unexpected(_EXPECT[t])
            return self.read_string()
        if t == "bool":
            if c == "t":
                self.read_ident("true")
                return True
            if c == "f":
                self.read_ident("false")
                return False
            self.unexpected("a boolean")
        if t in _MAX:
            if not (c == "-" or c.isdigit()):
                self.unexpected(t)
            v = self.read_number()
            if isinstance(v, float):
                r = repr(v)
                raise self.err("invalid type: floating point `%s`, expected %s" % (r, t))
            if v < 0 or v > _MAX[t]:
                raise self.err("invalid value: integer `%d`, expected %s" % (v, t))
            return v
        raise AssertionError("bad schema type %r" % (t,))

    def _end_map_error(self, msg):
        """serde_json's end_map() runs before an error without position gets one: it skips
        whitespace and eats a closing brace."""
        self.ws()
        if self.i < len(self.s) and self.s[self.i] == "}":
            self.i += 1
        return self.err(msg)

    def struct(self, st):
        c = self.peek()
        if c == "[":
            return self.struct_seq(st)
        if c != "{":
            self.unexpected("struct %s" % st.name)
        self.i += 1
        try:
            return self._struct_fields(st)
        except _Late as e:
            raise self._end_map_error(str(e))

    def struct_seq(self, st):
        """A derived struct also deserializes from a JSON array, fields in order."""
        self.i += 1
        out = {}
        n = len(st.fields)
        for idx, (name, t, _) in enumerate(st.fields):
            c = self.peek()
            if idx and c == ",":
                self.i += 1
                c = self.peek()
            if c == "]":
                self.i += 1
                raise self.err("invalid length %d, expected struct %s with %d elements"
                               % (idx, st.name, n))
            if c == "":
                raise self.err("EOF while parsing a list", len(self.s) - 1)
            out[name] = self.value(t)
        c = self.peek()
        if c == "]":
            self.i += 1
            return out
        self.i += 1
        raise self.err("trailing characters")

    def _struct_fields(self, st):
        names = [f[0] for f in st.fields]
        types = {f[0]: f for f in st.fields}
        out = {}
        first = True
        while True:
            key = self.next_key(first)
            first = False
            if key is None:
                break
            f = types.get(key)
            if f is None:
                if st.deny_unknown:
                    raise _Late("unknown field `%s`, %s" % (key, _one_of(names)))
                self.colon()
                self.skip_value()
                continue
            if key in out:
                raise _Late("duplicate field `%s`" % key)
            self.colon()
            out[key] = self.value(f[1])
        for name, t, mode in st.fields:
            if name not in out and mode == "req":
                if isinstance(t, tuple) and t[0] == "opt":
                    continue
                self.i -= 1      # the closing brace: _end_map_error eats it again
                raise _Late("missing field `%s`" % name)
        return out


def from_str(data, t):
    d = Deser(data)
    v = d.value(t)
    d.ws()
    if d.i < len(d.s):
        d.i += 1
        raise d.err("trailing characters")
    return v
