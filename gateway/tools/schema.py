"""From a Python signature to a tool's arguments model and JSON Schema; pydantic does the typing.

Pure functions, used by ``@tool`` at decoration time; nothing here runs during a call.
"""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable
from typing import Annotated, Any

import pydantic
from pydantic import Field, create_model
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue

from gateway.tools.base import ToolArguments

_ARGS_HEADER = re.compile(r"^(Args|Arguments|Parameters|Params|Keyword Args|Keyword Arguments):$")
_ANY_HEADER = re.compile(r"^[A-Z][A-Za-z ]*:$")
# "name: text", "name (int): text", "name (list[str], optional): text"
_ARG_LINE = re.compile(r"^\*{0,2}(\w+)\s*(?:\([^)]*\))?\s*:\s*(.*)$")
# Keys whose values are data, not schemas: a default of {"title": "x"} must survive title removal.
_DATA_KEYS = frozenset({"default", "const", "enum", "examples"})
_NAMED_SCHEMAS = frozenset({"properties", "patternProperties", "$defs"})


def split_docstring(doc: str | None) -> tuple[str, dict[str, str]]:
    """The docstring's first paragraph as one line, and the parameter texts of its "Args:" section.

    Google style is what is understood; any other docstring still gives its first paragraph.
    """
    lines = inspect.cleandoc(doc or "").splitlines()
    summary: list[str] = []
    for line in lines:
        if not line.strip() or _ANY_HEADER.match(line.strip()):
            break
        summary.append(line.strip())
    return " ".join(summary), _args_section(lines)


def _args_section(lines: list[str]) -> dict[str, str]:
    params: dict[str, str] = {}
    inside = False
    header_indent = item_indent = 0
    current: str | None = None
    for line in lines:
        text = line.strip()
        indent = len(line) - len(line.lstrip())
        if not inside:
            if _ARGS_HEADER.match(text):
                inside, header_indent, item_indent = True, indent, -1
            continue
        if not text:
            continue
        if indent <= header_indent:
            if _ARGS_HEADER.match(text):  # a second "Args:"-like section, e.g. "Keyword Args:"
                item_indent, current = -1, None
                continue
            inside = False
            continue
        if item_indent < 0:
            item_indent = indent
        match = _ARG_LINE.match(text) if indent == item_indent else None
        if match:
            current = match.group(1)
            params[current] = match.group(2).strip()
        elif current is not None:  # a continuation line
            params[current] = f"{params[current]} {text}".strip()
    return params


def arguments_model(fn: Callable[..., Any], tool_name: str) -> type[ToolArguments]:
    """A pydantic model with one field per parameter of ``fn``, validating the model's arguments.

    Raises ``TypeError`` naming the tool and the parameter when the signature cannot be a tool's:
    a missing type hint, ``*args``/``**kwargs``, positional-only parameters, or a type pydantic
    cannot describe in JSON Schema.
    """
    where = f"@tool {tool_name!r} ({fn.__module__}.{fn.__qualname__})"
    try:
        hints = typing.get_type_hints(fn, include_extras=True)
    except NameError as exc:
        # Hints are strings under ``from __future__ import annotations``; a class defined inside a
        # function cannot be found again by name.
        raise TypeError(
            f"{where}: cannot resolve a type hint ({exc}); define the types a tool uses at "
            "module level"
        ) from exc
    _, param_docs = split_docstring(fn.__doc__)
    fields: dict[str, Any] = {}
    for param in inspect.signature(fn).parameters.values():
        if param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            raise TypeError(f"{where}: *args and **kwargs cannot be tool parameters")
        if param.kind is param.POSITIONAL_ONLY:
            raise TypeError(
                f"{where}: parameter {param.name!r} is positional-only; tools are "
                "called with keyword arguments"
            )
        if param.name not in hints and param.name in ("self", "cls"):
            raise TypeError(f"{where}: tools are plain functions, not methods")
        if param.name not in hints:
            raise TypeError(
                f"{where}: parameter {param.name!r} has no type hint; every tool parameter needs "
                "one (it becomes the JSON Schema the model sees)"
            )
        annotation = _with_defaults(hints[param.name], param.name, param_docs.get(param.name))
        default = ... if param.default is param.empty else param.default
        fields[f"p_{param.name}"] = (annotation, default)
    try:
        model: type[ToolArguments] = create_model(
            f"{tool_name}_arguments", __base__=ToolArguments, **fields
        )
        model.model_json_schema()  # fail now, not at the first call, if a type has no schema
    except pydantic.PydanticUserError as exc:
        raise TypeError(f"{where}: {exc}") from exc
    for name, info in model.model_fields.items():
        if info.alias != name[2:]:
            raise TypeError(f"{where}: parameter {name[2:]!r} sets an alias; tools cannot")
    return model


def _with_defaults(annotation: Any, name: str, doc: str | None) -> Any:
    """``annotation`` plus the parameter's name as alias and its docstring text as description.

    The docstring text goes *before* the hint's own metadata, so an explicit
    ``Annotated[str, Field(description=...)]`` wins over the "Args:" section.
    """
    ours = Field(alias=name, description=doc) if doc else Field(alias=name)
    if typing.get_origin(annotation) is Annotated:
        base, *metadata = typing.get_args(annotation)
        return Annotated[(base, ours, *metadata)]
    return Annotated[annotation, ours]


class _InOrder(GenerateJsonSchema):
    """pydantic's schema generator, without sorting keys: ``type`` and ``properties`` stay first."""

    def sort(self, value: JsonSchemaValue, parent_key: str | None = None) -> JsonSchemaValue:
        return value


def parameters_schema(model: type[ToolArguments]) -> dict[str, Any]:
    """The JSON Schema of ``model`` as ``session.tools`` takes it: self-contained, without titles.

    References to nested types are inlined (every model reads a plain nested object; not all read
    ``$ref``) unless a type refers to itself, in which case ``$defs`` is kept. Titles are dropped:
    pydantic derives them from names the model already sees, and they cost tokens on every turn.
    """
    schema = model.model_json_schema(schema_generator=_InOrder)
    schema = _strip_titles(_inline_refs(schema))
    # OpenAI's own examples put these first; keep any other keyword pydantic emits after them.
    head = {"type": "object", "properties": schema.pop("properties", {})}
    if "required" in schema:
        head["required"] = schema.pop("required")
    schema.pop("type", None)
    return {**head, **schema}


class _SelfReference(Exception):
    pass


def _inline_refs(schema: dict[str, Any]) -> dict[str, Any]:
    defs: dict[str, Any] = schema.get("$defs", {})
    if not defs:
        return schema

    def resolve(node: Any, seen: tuple[str, ...]) -> Any:
        if isinstance(node, dict) and isinstance(node.get("$ref"), str):
            name = node["$ref"].removeprefix("#/$defs/")
            if name not in defs:  # not ours to resolve
                return node
            if name in seen:
                raise _SelfReference(name)
            siblings = {k: resolve(v, seen) for k, v in node.items() if k != "$ref"}
            return {**_walk(defs[name], lambda sub: resolve(sub, (*seen, name))), **siblings}
        return _walk(node, lambda sub: resolve(sub, seen))

    try:
        inlined: dict[str, Any] = resolve({k: v for k, v in schema.items() if k != "$defs"}, ())
    except _SelfReference:  # a type that contains itself: only a reference can describe it
        return schema
    return inlined


def _strip_titles(node: Any) -> Any:
    if isinstance(node, dict):
        node = {k: v for k, v in node.items() if not (k == "title" and isinstance(v, str))}
    return _walk(node, _strip_titles)


def _walk(node: Any, visit: Callable[[Any], Any]) -> Any:
    """``node`` with ``visit`` applied to each of its subschemas (one level down)."""
    if isinstance(node, list):
        return [visit(item) for item in node]
    if not isinstance(node, dict):
        return node
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _NAMED_SCHEMAS and isinstance(value, dict):
            # A mapping of names to schemas: a property may be called "title" or "default".
            out[key] = {name: visit(sub) for name, sub in value.items()}
        elif key in _DATA_KEYS:
            out[key] = value
        else:
            out[key] = visit(value)
    return out
