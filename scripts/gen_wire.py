#!/usr/bin/env python3
"""Generate lbwire/wire/_generated.py from protos/liftbridge/api.proto.

    python scripts/gen_wire.py            write the generated module
    python scripts/gen_wire.py --check    exit 1 if the committed module is stale

The .proto is read as text by a small parser for the proto3 subset the
Liftbridge schema uses (messages, nested messages and enums, enums, repeated
fields, map<>, field options, reserved ranges, services, comments); anything
else (proto2, imports, oneof, optional, groups, extensions...) stops it with
the file, line and column. No protoc is needed.

The output is already in ``ruff format`` style, so ``--check`` compares plain
text and does not depend on a formatter's version.
"""

from __future__ import annotations

import argparse
import keyword
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import NoReturn, Optional, Union

REPO = Path(__file__).resolve().parents[1]
PROTO = REPO / "protos" / "liftbridge" / "api.proto"
OUTPUT = REPO / "lbwire" / "wire" / "_generated.py"

#: Methods that lbwire/wire/messages.py replaces with hand-written fast paths.
#: The generated class says so, so that a reader of it is not misled.
HAND_TUNED = {
    "Message": "decode",
    "PublishRequest": "encode",
    "PublishResponse": "decode",
    "Ack": "decode",
}

#: Wrapper messages the codec maps to ``Optional`` scalars: name -> (kind, value type).
NULLABLE = {
    "NullableInt64": ("K_NULLABLE_INT64", "int64"),
    "NullableInt32": ("K_NULLABLE_INT32", "int32"),
    "NullableBool": ("K_NULLABLE_BOOL", "bool"),
}

#: Scalar proto types the codec implements: type -> (kind, Python type, default).
SCALARS = {
    "int32": ("K_INT32", "int", "0"),
    "int64": ("K_INT64", "int", "0"),
    "uint64": ("K_UINT64", "int", "0"),
    "bool": ("K_BOOL", "bool", "False"),
    "string": ("K_STRING", "str", '""'),
    "bytes": ("K_BYTES", "bytes", 'b""'),
}
#: Every scalar type of proto3, to tell "unsupported" from "unknown type".
ALL_SCALARS = set(SCALARS) | {
    "double",
    "float",
    "uint32",
    "sint32",
    "sint64",
    "fixed32",
    "fixed64",
    "sfixed32",
    "sfixed64",
}
REPEATED_SCALARS = {"int32": ("K_REP_INT32", "int"), "string": ("K_REP_STRING", "str")}

#: Names a field cannot take: the methods every message class has.
RESERVED_NAMES = {"encode", "decode", "SerializeToString", "FromString", "merge_range"}

LINE_LENGTH = 100


class ProtoError(Exception):
    """The .proto cannot be read, or uses a construct the generator does not support."""


# ---------------------------------------------------------------- the schema


@dataclass
class ProtoField:
    """One field of a message."""

    name: str
    number: int
    type: str  # as written; the map value type for maps
    repeated: bool = False
    map_key: Optional[str] = None
    where: str = ""  # file:line:col, for errors


@dataclass
class ProtoEnum:
    """An enum; ``parent`` is the enclosing message's full name or ''."""

    name: str
    parent: str
    values: list[tuple[str, int]] = field(default_factory=list)
    comment: list[str] = field(default_factory=list)
    where: str = ""

    @property
    def full_name(self) -> str:
        """Dotted name inside the package."""
        return f"{self.parent}.{self.name}" if self.parent else self.name


@dataclass
class ProtoMessage:
    """A message; nested messages and enums are listed in the schema too."""

    name: str
    parent: str
    fields: list[ProtoField] = field(default_factory=list)
    comment: list[str] = field(default_factory=list)
    where: str = ""

    @property
    def full_name(self) -> str:
        """Dotted name inside the package."""
        return f"{self.parent}.{self.name}" if self.parent else self.name


@dataclass
class ProtoFile:
    """What the generator needs of a .proto file."""

    package: str = ""
    messages: list[ProtoMessage] = field(default_factory=list)  # declaration order
    enums: list[ProtoEnum] = field(default_factory=list)
    rpc_types: list[tuple[str, str]] = field(default_factory=list)  # (type, where)


# ---------------------------------------------------------------- tokens

_TOKEN = re.compile(
    r"""
    (?P<space>[ \t\r\f\v]+)
  | (?P<newline>\n)
  | (?P<line_comment>//[^\n]*)
  | (?P<block_comment>/\*.*?\*/)
  | (?P<string>"(?:[^"\\\n]|\\.)*"|'(?:[^'\\\n]|\\.)*')
  | (?P<number>-?(?:0[xX][0-9a-fA-F]+|[0-9]+(?:\.[0-9]*)?(?:[eE][+-]?[0-9]+)?))
  | (?P<ident>\.?[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*)
  | (?P<symbol>[{}()\[\]<>;,=])
    """,
    re.VERBOSE | re.DOTALL,
)


@dataclass
class Token:
    """One token, with the comment lines directly above it."""

    kind: str
    text: str
    line: int
    col: int
    comment: list[str]


def tokenize(text: str, filename: str) -> list[Token]:
    """Split .proto text into tokens; leading ``//`` comments attach to the next token."""
    tokens: list[Token] = []
    pos = 0
    line = 1
    line_start = 0
    comment: list[str] = []
    blank_lines = 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        col = pos - line_start + 1
        if m is None:
            raise ProtoError(f"{filename}:{line}:{col}: unexpected character {text[pos]!r}")
        kind = m.lastgroup or ""
        value = m.group()
        if kind == "newline":
            blank_lines += 1
            if blank_lines > 1:
                comment = []  # a blank line detaches a comment from what follows
            line += 1
            line_start = m.end()
        elif kind == "line_comment":
            # A comment after a token on its line belongs to that line, not to the next token.
            if not (tokens and tokens[-1].line == line):
                comment.append(value[2:].strip())
            blank_lines = 0
        elif kind == "block_comment":
            line += value.count("\n")
            if "\n" in value:
                line_start = pos + value.rindex("\n") + 1
            comment = []
        elif kind != "space":
            tokens.append(Token(kind, value, line, col, comment))
            comment = []
            blank_lines = 0
        pos = m.end()
    tokens.append(Token("eof", "", line, pos - line_start + 1, []))
    return tokens


# ---------------------------------------------------------------- parser

_UNSUPPORTED = {
    "oneof": "oneof fields are not supported by lbwire.wire's codec",
    "optional": "proto3 'optional' (explicit presence) is not supported; "
    "use a Nullable* wrapper message",
    "required": "'required' is proto2, not proto3",
    "group": "groups are not supported",
    "extend": "extensions are not supported",
    "extensions": "extensions are not supported",
    "import": "imports are not supported: the schema must be one self-contained file",
}


class Parser:
    """Recursive-descent parser for the proto3 subset described in the module docstring."""

    def __init__(self, text: str, filename: str) -> None:
        self.filename = filename
        self.tokens = tokenize(text, filename)
        self.pos = 0
        self.file = ProtoFile()

    # -- token helpers

    def _peek(self) -> Token:
        return self.tokens[self.pos]

    def _where(self, token: Optional[Token] = None) -> str:
        t = token or self._peek()
        return f"{self.filename}:{t.line}:{t.col}"

    def _fail(self, message: str, token: Optional[Token] = None) -> NoReturn:
        raise ProtoError(f"{self._where(token)}: {message}")

    def _next(self) -> Token:
        t = self.tokens[self.pos]
        if t.kind != "eof":
            self.pos += 1
        return t

    def _expect(self, text: str) -> Token:
        t = self._next()
        if t.text != text:
            self._fail(f"expected {text!r}, found {t.text or 'end of file'!r}", t)
        return t

    def _accept(self, text: str) -> bool:
        if self._peek().text == text:
            self.pos += 1
            return True
        return False

    def _ident(self) -> Token:
        t = self._next()
        if t.kind != "ident":
            self._fail(f"expected a name, found {t.text or 'end of file'!r}", t)
        return t

    def _integer(self) -> int:
        t = self._next()
        if t.kind != "number" or not re.fullmatch(r"-?(0[xX][0-9a-fA-F]+|[0-9]+)", t.text):
            self._fail(f"expected an integer, found {t.text or 'end of file'!r}", t)
        return int(t.text, 0) if not re.fullmatch(r"-?0[0-9]+", t.text) else int(t.text, 8)

    def _reject_unsupported(self, t: Token) -> None:
        if t.kind == "ident" and t.text in _UNSUPPORTED:
            self._fail(f"{t.text!r}: {_UNSUPPORTED[t.text]}", t)

    # -- grammar

    def parse(self) -> ProtoFile:
        """Parse the whole file."""
        first = self._peek()
        if first.text != "syntax":
            self._fail('the file must start with syntax = "proto3";')
        self._next()
        self._expect("=")
        syntax = self._next()
        if syntax.text.strip("'\"") != "proto3":
            self._fail(f"only proto3 is supported, not {syntax.text}", syntax)
        self._expect(";")
        while self._peek().kind != "eof":
            t = self._peek()
            self._reject_unsupported(t)
            if t.text == "package":
                self._next()
                self.file.package = self._ident().text
                self._expect(";")
            elif t.text == "option":
                self._option()
            elif t.text == "message":
                self._message("")
            elif t.text == "enum":
                self._enum("")
            elif t.text == "service":
                self._service()
            elif t.text == ";":
                self._next()
            else:
                self._fail(f"unexpected {t.text!r} at the top level")
        return self.file

    def _constant(self) -> None:
        t = self._next()
        if t.kind not in ("ident", "number", "string"):
            self._fail(f"expected a constant, found {t.text or 'end of file'!r}", t)

    def _option_name(self) -> None:
        if self._accept("("):
            self._ident()
            self._expect(")")
            if self._peek().kind == "ident" and self._peek().text.startswith("."):
                self._next()
        else:
            self._ident()

    def _option(self) -> None:
        # Options change no binary encoding in the subset (jstype, java_package...).
        self._expect("option")
        self._option_name()
        self._expect("=")
        if self._peek().text == "{":
            self._fail("aggregate option values are not supported")
        self._constant()
        self._expect(";")

    def _field_options(self) -> None:
        if self._accept("["):
            while True:
                self._option_name()
                self._expect("=")
                self._constant()
                if not self._accept(","):
                    break
            self._expect("]")

    def _reserved(self) -> None:
        self._expect("reserved")
        while True:
            if self._peek().kind == "string":
                self._next()
            else:
                self._integer()
                if self._accept("to") and not self._accept("max"):
                    self._integer()
            if not self._accept(","):
                break
        self._expect(";")

    def _message(self, parent: str) -> None:
        start = self._expect("message")
        name = self._ident()
        msg = ProtoMessage(name.text, parent, comment=start.comment, where=self._where(start))
        self.file.messages.append(msg)
        self._expect("{")
        while not self._accept("}"):
            t = self._peek()
            self._reject_unsupported(t)
            if t.kind == "eof":
                self._fail(f"message {msg.name} is not closed")
            if t.text == "message":
                self._message(msg.full_name)
            elif t.text == "enum":
                self._enum(msg.full_name)
            elif t.text == "option":
                self._option()
            elif t.text == "reserved":
                self._reserved()
            elif t.text == ";":
                self._next()
            elif t.text == "map":
                self._map_field(msg)
            else:
                self._field(msg)

    def _field(self, msg: ProtoMessage) -> None:
        start = self._peek()
        repeated = self._accept("repeated")
        type_ = self._ident()
        self._reject_unsupported(type_)
        name = self._ident()
        self._expect("=")
        number = self._integer()
        self._field_options()
        self._expect(";")
        msg.fields.append(
            ProtoField(name.text, number, type_.text, repeated, None, self._where(start))
        )

    def _map_field(self, msg: ProtoMessage) -> None:
        start = self._expect("map")
        self._expect("<")
        key = self._ident()
        self._expect(",")
        value = self._ident()
        self._expect(">")
        name = self._ident()
        self._expect("=")
        number = self._integer()
        self._field_options()
        self._expect(";")
        msg.fields.append(
            ProtoField(name.text, number, value.text, False, key.text, self._where(start))
        )

    def _enum(self, parent: str) -> None:
        start = self._expect("enum")
        name = self._ident()
        enum = ProtoEnum(name.text, parent, comment=start.comment, where=self._where(start))
        self.file.enums.append(enum)
        self._expect("{")
        while not self._accept("}"):
            t = self._peek()
            if t.kind == "eof":
                self._fail(f"enum {enum.name} is not closed")
            if t.text == "option":
                self._option()
            elif t.text == "reserved":
                self._reserved()
            elif t.text == ";":
                self._next()
            else:
                value = self._ident()
                self._expect("=")
                number = self._integer()
                self._field_options()
                self._expect(";")
                enum.values.append((value.text, number))

    def _service(self) -> None:
        self._expect("service")
        self._ident()
        self._expect("{")
        while not self._accept("}"):
            t = self._peek()
            if t.kind == "eof":
                self._fail("service is not closed")
            if t.text == "option":
                self._option()
            elif t.text == ";":
                self._next()
            elif t.text == "rpc":
                self._next()
                self._ident()
                for i, keyword in enumerate(("(", "returns")):
                    if i:
                        self._expect(keyword)
                        self._expect("(")
                    else:
                        self._expect("(")
                    self._accept("stream")
                    type_ = self._ident()
                    self.file.rpc_types.append((type_.text, self._where(type_)))
                    self._expect(")")
                if self._accept("{"):
                    while not self._accept("}"):
                        if self._peek().kind == "eof":
                            self._fail("rpc is not closed")
                        if self._peek().text == ";":
                            self._next()
                        else:
                            self._option()
                else:
                    self._expect(";")
            else:
                self._fail(f"unexpected {t.text!r} in a service")


def parse(text: str, filename: str = "<proto>") -> ProtoFile:
    """Parse .proto text; raise ProtoError with a location on anything unsupported."""
    return Parser(text, filename).parse()


# ---------------------------------------------------------------- model for Python


@dataclass
class PyField:
    """A field as the generated class spells it."""

    number: int
    name: str
    kind: str
    type_ref: Optional[str]  # class named in the Field table
    annotation: str
    init_annotation: str
    default: str
    assign: str  # right-hand side in __init__


class Schema:
    """Resolves names of a parsed file and maps every field to a codec kind."""

    def __init__(self, proto: ProtoFile) -> None:
        self.proto = proto
        self.types: dict[str, Union[ProtoMessage, ProtoEnum]] = {}
        declared: list[Union[ProtoMessage, ProtoEnum]] = [*proto.messages, *proto.enums]
        for item in declared:
            if item.full_name in self.types:
                raise ProtoError(f"{item.where}: {item.full_name} is defined twice")
            self.types[item.full_name] = item
        python_names: dict[str, str] = {}
        for item in self.types.values():
            py = self.python_name(item)
            if py in python_names:
                raise ProtoError(
                    f"{item.where}: {item.full_name} and {python_names[py]} would both be "
                    f"the Python class {py}"
                )
            python_names[py] = item.full_name
        for type_, where in proto.rpc_types:
            resolved = self.resolve(type_, "", where)
            if not isinstance(resolved, ProtoMessage):
                raise ProtoError(f"{where}: rpc type {type_} is not a message")
        self._check_wrappers()

    @staticmethod
    def python_name(item: Union[ProtoMessage, ProtoEnum]) -> str:
        """``Outer.Inner`` becomes ``OuterInner`` (reachable as ``Outer.Inner`` too)."""
        return item.full_name.replace(".", "")

    def resolve(self, name: str, scope: str, where: str) -> Union[ProtoMessage, ProtoEnum]:
        """Find a type the way protoc does: innermost scope first."""
        if name.startswith("."):
            prefix = f".{self.proto.package}." if self.proto.package else "."
            found = self.types.get(name[len(prefix) :]) if name.startswith(prefix) else None
            if found is None:
                raise ProtoError(f"{where}: unknown type {name}")
            return found
        parts = scope.split(".") if scope else []
        while True:
            candidate = ".".join([*parts, name])
            if candidate in self.types:
                return self.types[candidate]
            if not parts:
                break
            parts.pop()
        if self.proto.package and name.startswith(self.proto.package + "."):
            return self.resolve("." + name, "", where)
        raise ProtoError(f"{where}: unknown type {name}")

    def _check_wrappers(self) -> None:
        for name, (_, value_type) in NULLABLE.items():
            wrapper = self.types.get(name)
            if wrapper is None:
                continue
            fields = wrapper.fields if isinstance(wrapper, ProtoMessage) else None
            if not fields or [(f.name, f.number, f.type, f.repeated) for f in fields] != [
                ("value", 1, value_type, False)
            ]:
                raise ProtoError(
                    f"{wrapper.where}: {name} must hold exactly '{value_type} value = 1;' "
                    "(lbwire.wire maps it to an Optional value)"
                )

    def _enum_default(self, enum: ProtoEnum) -> str:
        zero = [name for name, number in enum.values if number == 0]
        return f"{self.python_name(enum)}.{zero[0]}"

    def py_field(self, msg: ProtoMessage, f: ProtoField) -> PyField:
        """Map one proto field to its codec kind and Python spelling."""
        where = f.where
        if f.map_key is not None:
            value = f.type
            if f.map_key == "string" and value == "bytes":
                return PyField(
                    f.number,
                    f.name,
                    "K_MAP_STR_BYTES",
                    None,
                    "dict[str, bytes]",
                    "Optional[Mapping[str, bytes]]",
                    "None",
                    f"dict({f.name}) if {f.name} else {{}}",
                )
            target = None if value in ALL_SCALARS else self.resolve(value, msg.full_name, where)
            if f.map_key == "int32" and isinstance(target, ProtoMessage):
                cls = self.python_name(target)
                return PyField(
                    f.number,
                    f.name,
                    "K_MAP_INT32_MESSAGE",
                    cls,
                    f"dict[int, {cls}]",
                    f"Optional[Mapping[int, {cls}]]",
                    "None",
                    f"dict({f.name}) if {f.name} else {{}}",
                )
            raise ProtoError(
                f"{where}: map<{f.map_key}, {value}> is not supported "
                "(lbwire.wire has map<string, bytes> and map<int32, message>)"
            )
        if f.type in SCALARS:
            kind, py, default = SCALARS[f.type]
            if f.repeated:
                if f.type not in REPEATED_SCALARS:
                    raise ProtoError(
                        f"{where}: repeated {f.type} is not supported "
                        "(lbwire.wire has repeated int32, string and messages)"
                    )
                kind, py = REPEATED_SCALARS[f.type]
                return PyField(
                    f.number,
                    f.name,
                    kind,
                    None,
                    f"list[{py}]",
                    f"Iterable[{py}]",
                    "()",
                    f"list({f.name})",
                )
            return PyField(f.number, f.name, kind, None, py, py, default, f.name)
        if f.type in ALL_SCALARS:
            raise ProtoError(
                f"{where}: field type {f.type} is not supported by lbwire.wire's codec "
                f"(supported: {', '.join(SCALARS)}, enums, messages)"
            )
        target = self.resolve(f.type, msg.full_name, where)
        cls = self.python_name(target)
        if isinstance(target, ProtoEnum):
            if f.repeated:
                raise ProtoError(f"{where}: repeated enums are not supported")
            return PyField(
                f.number, f.name, "K_ENUM", cls, "int", "int", self._enum_default(target), f.name
            )
        if f.repeated:
            return PyField(
                f.number,
                f.name,
                "K_REP_MESSAGE",
                cls,
                f"list[{cls}]",
                f"Iterable[{cls}]",
                "()",
                f"list({f.name})",
            )
        if target.full_name in NULLABLE:
            kind, value_type = NULLABLE[target.full_name]
            py = SCALARS[value_type][1]
            return PyField(
                f.number, f.name, kind, cls, f"Optional[{py}]", f"Optional[{py}]", "None", f.name
            )
        return PyField(
            f.number,
            f.name,
            "K_MESSAGE",
            cls,
            f"Optional[{cls}]",
            f"Optional[{cls}]",
            "None",
            f.name,
        )

    def message_fields(self, msg: ProtoMessage) -> list[PyField]:
        """The fields of ``msg`` in field-number order, checked for clashes."""
        seen_numbers: dict[int, str] = {}
        seen_names: set[str] = set()
        for f in msg.fields:
            if not 1 <= f.number <= 0x1FFFFFFF or 19000 <= f.number <= 19999:
                raise ProtoError(f"{f.where}: invalid field number {f.number}")
            if f.number in seen_numbers:
                raise ProtoError(
                    f"{f.where}: field number {f.number} is used by {seen_numbers[f.number]} too"
                )
            if f.name in seen_names:
                raise ProtoError(f"{f.where}: field name {f.name!r} is used twice")
            if keyword.iskeyword(f.name) or f.name.startswith("_") or f.name in RESERVED_NAMES:
                raise ProtoError(
                    f"{f.where}: field name {f.name!r} cannot be a Python attribute of a message"
                )
            seen_numbers[f.number] = f.name
            seen_names.add(f.name)
        return [self.py_field(msg, f) for f in sorted(msg.fields, key=lambda f: f.number)]

    def ordered_messages(self) -> list[ProtoMessage]:
        """Messages in declaration order, moved after the messages their fields name.

        The field tables name classes at class-creation time, so a class must
        come after the classes its fields refer to.
        """
        done: list[ProtoMessage] = []
        state: dict[str, int] = {}  # 1 = in progress, 2 = done

        def visit(msg: ProtoMessage) -> None:
            mark = state.get(msg.full_name)
            if mark == 2:
                return
            if mark == 1:
                raise ProtoError(
                    f"{msg.where}: {msg.full_name} refers to itself through its fields; "
                    "recursive messages are not supported"
                )
            state[msg.full_name] = 1
            for f in msg.fields:
                if f.type in ALL_SCALARS:
                    continue
                target = self.resolve(f.type, msg.full_name, f.where)
                if isinstance(target, ProtoMessage):
                    visit(target)
            state[msg.full_name] = 2
            done.append(msg)

        for msg in self.proto.messages:
            visit(msg)
        return done


# ---------------------------------------------------------------- Python source


def docstring(comment: list[str], fallback: str, indent: str) -> list[str]:
    """A docstring from the comment above a declaration.

    Its first paragraph becomes the summary line when it fits on one line;
    otherwise ``fallback`` is the summary and the whole comment the body.
    """
    lines = [line.replace('"""', "'''").rstrip() for line in comment]
    lines = [line for line in lines if not (line and set(line) <= {"-", " "})]
    while lines and not lines[-1]:
        lines.pop()
    while lines and not lines[0]:
        lines.pop(0)
    if not lines:
        return [f'{indent}"""{fallback}"""']
    first = lines.index("") if "" in lines else len(lines)
    summary = " ".join(lines[:first])
    if summary[-1] not in ".!?:":
        summary += "."
    body = lines[first + 1 :]
    if len(indent) + len(summary) + 6 > LINE_LENGTH:
        summary, body = fallback, lines
    if not body:
        return [f'{indent}"""{summary}"""']
    out = [f'{indent}"""{summary}', ""]
    out += [f"{indent}{line}" if line else "" for line in body]
    out.append(f'{indent}"""')
    return out


def tuple_lines(head: str, items: list[str], indent: str) -> list[str]:
    """``head = (...)`` formatted as ruff format does (one line if it fits)."""
    if not items:
        return [f"{indent}{head} = ()"]
    if len(items) == 1:
        one = f"{indent}{head} = ({items[0]},)"
        if len(one) <= LINE_LENGTH:
            return [one]
    else:
        one = f"{indent}{head} = ({', '.join(items)})"
        if len(one) <= LINE_LENGTH:
            return [one]
    return [f"{indent}{head} = (", *[f"{indent}    {item}," for item in items], f"{indent})"]


def generate(proto: ProtoFile, source: str = "protos/liftbridge/api.proto") -> str:
    """The Python module for a parsed schema."""
    schema = Schema(proto)
    messages = schema.ordered_messages()
    tables = {msg.full_name: schema.message_fields(msg) for msg in messages}
    for enum in proto.enums:
        if not enum.values or enum.values[0][1] != 0:
            raise ProtoError(f"{enum.where}: the first value of a proto3 enum must be 0")
        names = [name for name, _ in enum.values]
        if len(set(names)) != len(names) or len({n for _, n in enum.values}) != len(names):
            raise ProtoError(f"{enum.where}: enum {enum.full_name} repeats a name or a value")

    used_kinds = sorted({f.kind for table in tables.values() for f in table})
    annotations = " ".join(f.init_annotation for table in tables.values() for f in table)
    typing_names = [n for n in ("Iterable", "Mapping", "Optional") if n in annotations]

    out: list[str] = [
        f"# Generated by scripts/gen_wire.py from {source}; do not edit.",
        "# Regenerate with: python scripts/gen_wire.py",
        f'"""Liftbridge API messages and enums, generated from ``{source}``.',
        "",
        "Attribute names are the proto field names (camelCase, as in protobuf's",
        "generated classes); ``_FIELDS`` drives the generic codec in ``_codec``.",
        "A nested enum ``Outer.Inner`` is the class ``OuterInner``, also reachable",
        "as ``Outer.Inner``. ``messages.py`` adds hand-written fast paths to a few",
        "classes; import the classes from ``lbwire.wire``.",
        '"""',
        "",
        "from __future__ import annotations",
        "",
        "from enum import IntEnum",
    ]
    if typing_names:
        out.append(f"from typing import {', '.join(typing_names)}")
    out += ["", "from ._codec import ("]
    out += [f"    {kind}," for kind in used_kinds]
    out += ["    Field,", "    WireMessage,", ")"]

    out += [
        "",
        "# " + "-" * 64 + " enums",
        "# Decoders turn known values into members and leave unknown values as ints.",
    ]
    for enum in proto.enums:
        out += ["", "", f"class {schema.python_name(enum)}(IntEnum):"]
        out += docstring(enum.comment, f"``{enum.full_name}``.", "    ")
        out.append("")
        out += [f"    {name} = {number}" for name, number in enum.values]

    out += ["", "", "# " + "-" * 64 + " messages"]
    for msg in messages:
        py = schema.python_name(msg)
        table = tables[msg.full_name]
        out += ["", "", f"class {py}(WireMessage):"]
        out += docstring(msg.comment, f"``{msg.full_name}``.", "    ")
        out.append("")
        out += tuple_lines("__slots__", [f'"{n}"' for n in sorted(f.name for f in table)], "    ")
        nested: list[Union[ProtoMessage, ProtoEnum]] = [*proto.enums, *proto.messages]
        for item in nested:
            if item.parent == msg.full_name:
                out.append(f"    {item.name} = {schema.python_name(item)}")
        entries = []
        for f in table:
            args = [str(f.number), f'"{f.name}"', f.kind] + ([f.type_ref] if f.type_ref else [])
            entries.append(f"Field({', '.join(args)})")
        if len(entries) <= 1:
            out += tuple_lines("_FIELDS", entries, "    ")
        else:  # one field a line, as the hand-written tables had them
            out += ["    _FIELDS = (", *[f"        {e}," for e in entries], "    )"]
        if msg.name in HAND_TUNED and not msg.parent:
            method = HAND_TUNED[msg.name]
            out.append(f"    # {method}() is replaced by a hand-written fast path in messages.py.")
        if table:
            out.append("")
            out += [f"    {f.name}: {f.annotation}" for f in table]
            out += ["", "    def __init__(", "        self,", "        *,"]
            out += [f"        {f.name}: {f.init_annotation} = {f.default}," for f in table]
            out.append("    ) -> None:")
            out += [f"        self.{f.name} = {f.assign}" for f in table]
    out.append("")
    for line in out:
        if len(line) > LINE_LENGTH:
            raise ProtoError(f"generated line longer than {LINE_LENGTH} characters: {line.strip()}")
    return "\n".join(out)


def main(argv: Optional[list[str]] = None) -> int:
    """Command line: generate, or check with --check."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="fail if the output is stale")
    parser.add_argument("--proto", type=Path, default=PROTO, help="schema to read")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="module to write or check")
    args = parser.parse_args(argv)
    try:
        source = args.proto.resolve().relative_to(REPO).as_posix()
    except ValueError:
        source = args.proto.name
    try:
        text = generate(parse(args.proto.read_text(encoding="utf-8"), str(args.proto)), source)
    except ProtoError as exc:
        print(f"gen_wire: {exc}", file=sys.stderr)
        return 2
    stale = (
        f"gen_wire: {args.output} is stale: it differs from what {source} generates; "
        "run: python scripts/gen_wire.py"
    )
    # The generators' shared helpers, beside this script (also when it is
    # loaded from its path, as the tests do).
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _codegen import write_or_check

    return write_or_check(args.output, text, check=args.check, stale=stale)


if __name__ == "__main__":
    sys.exit(main())
