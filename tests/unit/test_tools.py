from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import enum
import json
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal

import pytest
import structlog
from pydantic import BaseModel, Field, model_validator
from structlog.testing import capture_logs
from typing_extensions import TypedDict  # typing.TypedDict is refused by pydantic before 3.12

from gateway.config import ConfigError
from gateway.tools import (
    Tool,
    ToolError,
    ToolRegistry,
    ToolResult,
    examples,
    load_tool_modules,
    run_tool,
    runner,
    tool,
)
from gateway.tools.schema import split_docstring

# Types used in tool signatures live at module level: with postponed annotations, hints are
# resolved by name in the module's globals.


class Color(enum.Enum):
    RED = "red"
    GREEN = "green"


class Address(BaseModel):
    """A postal address."""

    street: str = Field(description="Street and number")
    zip: str
    country: str = "FR"


class Node(BaseModel):
    value: int
    children: list[Node] = []


class Point(TypedDict):
    x: float
    y: float


@dataclasses.dataclass
class Size:
    width: int
    height: int = 1


class Titled(BaseModel):
    title: str
    default: int = 0


class Opaque:
    pass


class Picky(BaseModel):
    value: int

    @model_validator(mode="after")
    def explode(self) -> Picky:
        raise RuntimeError("validator bug")


def spec(fn: Any) -> Tool:
    found = fn.__realtime_tool__
    assert isinstance(found, Tool)
    return found


def props(fn: Any) -> dict[str, Any]:
    return spec(fn).parameters["properties"]  # type: ignore[no-any-return]


class TestToolDecorator:
    def test_bare_decorator_attaches_a_tool(self) -> None:
        """@tool returns the function itself, still callable, with a Tool attached."""

        def greet(name: str) -> str:
            """Say hello."""
            return f"hello {name}"

        decorated = tool(greet)
        assert decorated is greet
        assert greet("ada") == "hello ada"
        t = spec(greet)
        assert (t.name, t.description, t.handler, t.timeout) == ("greet", "Say hello.", greet, None)

    def test_options_override_name_description_and_timeout(self) -> None:
        """name=, description= and timeout= win over the function's own."""

        @tool(name="calc", description="Adds.", timeout=5.0)
        async def add(a: int, b: int) -> int:
            """Ignored."""
            return a + b

        t = spec(add)
        assert (t.name, t.description, t.timeout) == ("calc", "Adds.", 5.0)

    def test_description_is_the_first_paragraph(self) -> None:
        """A multi-line first paragraph becomes one line; later paragraphs and sections are not."""

        @tool
        def f(x: int) -> None:
            """Look something
            up by number.

            More detail the model does not need.

            Args:
                x: The number.
            """

        assert spec(f).description == "Look something up by number."

    def test_no_docstring_gives_empty_description(self) -> None:
        """A function without a docstring still makes a tool."""

        @tool
        def f() -> None:
            pass

        assert spec(f).description == ""

    def test_missing_hint_is_a_type_error(self) -> None:
        """A parameter without a type hint fails at decoration, naming tool and parameter."""

        def f(a: int, b):  # type: ignore[no-untyped-def]
            pass

        with pytest.raises(TypeError, match=r"@tool 'f'.*parameter 'b' has no type hint"):
            tool(f)

    def test_varargs_are_refused(self) -> None:
        """*args and **kwargs cannot be described to the model."""

        def f(*args: int) -> None:
            pass

        def g(**kwargs: int) -> None:
            pass

        for fn in (f, g):
            with pytest.raises(TypeError, match=r"\*args and \*\*kwargs"):
                tool(fn)

    def test_positional_only_is_refused(self) -> None:
        """Tools are called with keyword arguments, so positional-only parameters cannot work."""

        def f(a: int, /) -> None:
            pass

        with pytest.raises(TypeError, match="positional-only"):
            tool(f)

    def test_methods_are_refused(self) -> None:
        """An unhinted self says tools are plain functions."""

        class C:
            def m(self, x: int) -> None:
                pass

        with pytest.raises(TypeError, match="plain functions"):
            tool(C.m)

    def test_non_functions_are_refused(self) -> None:
        """Classes and builtins are not tools."""
        with pytest.raises(TypeError, match="function defined with def"):
            tool(len)

    def test_bad_name_is_a_value_error(self) -> None:
        """A name OpenAI would refuse fails at decoration, not mid-call."""
        with pytest.raises(ValueError, match="tool name"):

            @tool(name="no spaces allowed")
            def f() -> None:
                pass

    def test_bad_timeout_is_a_value_error(self) -> None:
        """A non-positive timeout is refused."""
        with pytest.raises(ValueError, match="timeout"):

            @tool(timeout=0)
            def f() -> None:
                pass

    def test_unresolvable_hint_is_a_type_error(self) -> None:
        """A hint naming a class defined in a local scope says where to define it."""

        class Local(BaseModel):
            a: int

        def f(x: Local) -> None:
            pass

        with pytest.raises(TypeError, match="module level"):
            tool(f)

    def test_type_without_schema_is_a_type_error(self) -> None:
        """A type pydantic cannot validate or describe fails at decoration."""

        def f(x: Opaque) -> None:
            pass

        with pytest.raises(TypeError, match=r"@tool 'f'"):
            tool(f)


class TestSchema:
    def test_scalars_required_and_defaults(self) -> None:
        """str/int/float/bool map to JSON types; parameters without default are required."""

        @tool
        def f(s: str, i: int, n: float = 1.5, b: bool = False) -> None:
            pass

        assert spec(f).parameters == {
            "type": "object",
            "properties": {
                "s": {"type": "string"},
                "i": {"type": "integer"},
                "n": {"type": "number", "default": 1.5},
                "b": {"type": "boolean", "default": False},
            },
            "required": ["s", "i"],
            "additionalProperties": False,
        }

    def test_no_parameters(self) -> None:
        """A tool without parameters takes an empty object."""

        @tool
        def f() -> None:
            pass

        assert spec(f).parameters == {
            "type": "object",
            "properties": {},
            "additionalProperties": False,
        }

    def test_literal_and_enum(self) -> None:
        """Literal and Enum become inline enums; an Enum default is its value."""

        @tool
        def f(unit: Literal["c", "f"], color: Color = Color.RED) -> None:
            pass

        assert props(f) == {
            "unit": {"type": "string", "enum": ["c", "f"]},
            "color": {"enum": ["red", "green"], "type": "string", "default": "red"},
        }

    def test_optional(self) -> None:
        """X | None = None is nullable, defaults to null and is not required."""

        @tool
        def f(limit: int | None = None) -> None:
            pass

        assert props(f) == {
            "limit": {"anyOf": [{"type": "integer"}, {"type": "null"}], "default": None}
        }
        assert "required" not in spec(f).parameters

    def test_containers(self) -> None:
        """list[...] and dict[str, ...] give arrays and maps."""

        @tool
        def f(tags: list[str], weights: dict[str, float]) -> None:
            pass

        assert props(f) == {
            "tags": {"type": "array", "items": {"type": "string"}},
            "weights": {"type": "object", "additionalProperties": {"type": "number"}},
        }

    def test_nested_model_is_inlined(self) -> None:
        """A nested BaseModel appears in place: no $ref, no $defs, no titles, docs kept."""

        @tool
        def f(address: Address) -> None:
            pass

        schema = spec(f).parameters
        assert "$defs" not in schema
        assert schema["properties"]["address"] == {
            "type": "object",
            "properties": {
                "street": {"type": "string", "description": "Street and number"},
                "zip": {"type": "string"},
                "country": {"type": "string", "default": "FR"},
            },
            "required": ["street", "zip"],
            "description": "A postal address.",
        }

    def test_typeddict_and_dataclass(self) -> None:
        """TypedDicts and dataclasses are described like models."""

        @tool
        def f(at: Point, size: Size | None = None) -> None:
            pass

        p = props(f)
        assert p["at"] == {
            "type": "object",
            "properties": {"x": {"type": "number"}, "y": {"type": "number"}},
            "required": ["x", "y"],
            # A TypedDict has no config of its own: it inherits the arguments' extra="forbid".
            "additionalProperties": False,
        }
        sized = p["size"]["anyOf"][0]
        assert sized["required"] == ["width"]
        assert sized["properties"]["height"] == {"type": "integer", "default": 1}

    def test_recursive_model_keeps_defs(self) -> None:
        """A type that contains itself can only be a reference: $defs stays, self-contained."""

        @tool
        def f(tree: Node) -> None:
            pass

        schema = spec(f).parameters
        assert schema["properties"]["tree"] == {"$ref": "#/$defs/Node"}
        node = schema["$defs"]["Node"]
        assert node["properties"]["children"]["items"] == {"$ref": "#/$defs/Node"}
        assert "title" not in node

    def test_descriptions_from_args_section(self) -> None:
        """The docstring's Args: section describes parameters, continuation lines joined."""

        @tool
        def f(city: str, days: int = 1) -> None:
            """Weather forecast.

            Args:
                city: The city,
                    with its country.
                days (int, optional): How many days.

            Returns:
                Not a parameter.
            """

        assert props(f) == {
            "city": {"type": "string", "description": "The city, with its country."},
            "days": {"type": "integer", "default": 1, "description": "How many days."},
        }

    def test_field_description_wins_over_docstring(self) -> None:
        """Annotated[..., Field(description=...)] takes precedence over Args:, constraints kept."""

        @tool
        def f(n: Annotated[int, Field(description="From Field", ge=1, le=10)] = 3) -> None:
            """Doc.

            Args:
                n: From the docstring.
            """

        assert props(f) == {
            "n": {
                "type": "integer",
                "minimum": 1,
                "maximum": 10,
                "description": "From Field",
                "default": 3,
            }
        }

    def test_awkward_parameter_names(self) -> None:
        """Parameters named like BaseModel methods or schema keywords work."""

        @tool
        def f(json: str, copy: bool, title: Titled) -> None:
            pass

        schema = spec(f).parameters
        assert list(schema["properties"]) == ["json", "copy", "title"]
        titled = schema["properties"]["title"]
        assert titled["properties"] == {
            "title": {"type": "string"},
            "default": {"type": "integer", "default": 0},
        }

    def test_definition_shape(self) -> None:
        """definition() is session.tools' entry, and a copy the caller may change."""

        @tool
        def f(x: int) -> None:
            """Doc."""

        t = spec(f)
        d = t.definition()
        assert d == {
            "type": "function",
            "name": "f",
            "description": "Doc.",
            "parameters": t.parameters,
        }
        d["parameters"]["properties"].clear()
        assert t.parameters["properties"] == {"x": {"type": "integer"}}

    def test_split_docstring_sections(self) -> None:
        """Other sections end Args:; a summary directly followed by a section stops there."""
        summary, params = split_docstring(
            """Summary line.
            Args:
                a: first
                b: second
            Raises:
                c: not a parameter
            """
        )
        assert summary == "Summary line."
        assert params == {"a": "first", "b": "second"}
        assert split_docstring(None) == ("", {})


class TestRegistry:
    def test_register_tools_and_functions(self) -> None:
        """Tools and decorated functions register; lookups and order follow registration."""

        @tool
        def b() -> None:
            pass

        @tool
        def a() -> None:
            pass

        registry = ToolRegistry([spec(b)])
        registry.register(a)
        assert registry.names() == ["b", "a"]
        assert len(registry) == 2
        assert "a" in registry and "zzz" not in registry and 3 not in registry
        assert registry.get("a") is spec(a)
        assert registry.get("zzz") is None
        assert [t.name for t in registry] == ["b", "a"]
        assert registry.definitions() == [spec(b).definition(), spec(a).definition()]

    def test_duplicate_name_is_refused(self) -> None:
        """Two tools cannot share a name: the model calls them by name."""

        @tool
        def a() -> None:
            pass

        @tool(name="a")
        def other() -> None:
            pass

        registry = ToolRegistry([a])
        with pytest.raises(ValueError, match="'a' is already registered"):
            registry.register(other)

    def test_non_tool_is_refused(self) -> None:
        """A plain function is not silently accepted."""

        def plain() -> None:
            pass

        with pytest.raises(TypeError, match="decorate it with @tool"):
            ToolRegistry().register(plain)


@pytest.fixture(name="make_module")
def _make_module(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """Writes a throwaway module on sys.path and returns its (unique) name."""
    monkeypatch.syspath_prepend(str(tmp_path))
    created: list[str] = []

    def make(source: str) -> str:
        name = f"tools_{uuid.uuid4().hex[:12]}"
        (tmp_path / f"{name}.py").write_text(source)
        created.append(name)
        return name

    yield make
    for name in created:
        sys.modules.pop(name, None)


TOOLS_AB = """
from gateway.tools import tool

HELPER = 1

@tool
def zeta(x: int) -> int:
    '''Last letter, first defined.'''
    return x

def not_a_tool() -> None:
    pass

@tool(name="alpha")
async def second(y: str) -> str:
    return y
"""


class TestLoader:
    def test_loads_tools_in_module_order(self, make_module: Any) -> None:
        """Every @tool in the module is registered, in definition order, nothing else."""
        name = make_module(TOOLS_AB)
        registry = load_tool_modules(name)
        assert registry.names() == ["zeta", "alpha"]
        assert registry.get("zeta").description == "Last letter, first defined."  # type: ignore[union-attr]

    def test_several_modules_and_spellings(self, make_module: Any) -> None:
        """A comma list with spaces and a list of names both work; empty entries are skipped."""
        first = make_module(TOOLS_AB)
        second = make_module("from gateway.tools import tool\n@tool\ndef gamma() -> None: ...\n")
        assert load_tool_modules(f" {first} , {second},").names() == ["zeta", "alpha", "gamma"]
        assert load_tool_modules([first, second]).names() == ["zeta", "alpha", "gamma"]

    def test_empty_spec_gives_empty_registry(self) -> None:
        """GATEWAY_TOOLS unset or empty means no tools, not an error."""
        assert len(load_tool_modules("")) == 0
        assert len(load_tool_modules([])) == 0

    def test_missing_module(self) -> None:
        """An unknown module stops startup with the import error."""
        with pytest.raises(ConfigError) as info:
            load_tool_modules("no_such_pkg_x.bar")
        assert str(info.value) == (
            "GATEWAY_TOOLS: cannot import 'no_such_pkg_x.bar': No module named 'no_such_pkg_x'"
        )

    def test_module_that_raises(self, make_module: Any) -> None:
        """An exception while importing names the module, the exception type and message."""
        name = make_module("raise RuntimeError('database unreachable')\n")
        with pytest.raises(ConfigError, match=f"cannot import '{name}': RuntimeError: database"):
            load_tool_modules(name)

    def test_module_with_syntax_error(self, make_module: Any) -> None:
        """A syntax error is reported like any import failure."""
        name = make_module("def broken(:\n")
        with pytest.raises(ConfigError, match=f"cannot import '{name}': SyntaxError"):
            load_tool_modules(name)

    def test_bad_tool_in_module(self, make_module: Any) -> None:
        """A tool that fails decoration (missing hint) stops startup with the reason."""
        name = make_module("from gateway.tools import tool\n@tool\ndef f(x): ...\n")
        with pytest.raises(ConfigError, match="TypeError: @tool 'f'.*no type hint"):
            load_tool_modules(name)

    def test_module_without_tools(self, make_module: Any) -> None:
        """Listing a module that defines no tool is a configuration mistake."""
        name = make_module("X = 1\n")
        with pytest.raises(ConfigError, match=f"module '{name}' defines no tools"):
            load_tool_modules(name)

    def test_duplicate_names_across_modules(self, make_module: Any) -> None:
        """Two different tools with one name are refused, naming both modules."""
        first = make_module(TOOLS_AB)
        second = make_module("from gateway.tools import tool\n@tool\ndef zeta() -> None: ...\n")
        with pytest.raises(ConfigError, match=f"two tools are named 'zeta', in '{first}' and"):
            load_tool_modules([first, second])

    def test_reexported_tool_is_not_a_duplicate(self, make_module: Any) -> None:
        """A module re-exporting another listed module's tool does not clash with it."""
        first = make_module(TOOLS_AB)
        second = make_module(f"from {first} import zeta\n")
        assert load_tool_modules([first, second]).names() == ["zeta", "alpha"]

    def test_not_a_module_name(self) -> None:
        """Something that cannot be a module name is refused before importing anything."""
        with pytest.raises(ConfigError, match="'gateway/tools' is not a module name"):
            load_tool_modules("gateway/tools")

    def test_examples_module(self) -> None:
        """GATEWAY_TOOLS=gateway.tools.examples gives the two demo tools."""
        assert load_tool_modules("gateway.tools.examples").names() == [
            "current_time",
            "calculate",
        ]


@tool
def add(a: int, b: int = 0) -> int:
    return a + b


@tool
async def describe(color: Color, address: Address, at: Point | None = None) -> dict[str, Any]:
    return {
        "color": color,
        "is_enum": isinstance(color, Color),
        "is_model": isinstance(address, Address),
        "zip": address.zip,
        "at": at,
    }


@dataclasses.dataclass
class Reading:
    sensor: str
    at: dt.datetime


class TestRunTool:
    async def test_sync_tool(self) -> None:
        """A sync tool runs and its result is JSON; numeric strings are coerced per the hints."""
        result = await run_tool(spec(add), '{"a": "2", "b": 3}')
        assert (result.output, result.status) == ("5", "ok")
        assert isinstance(result, ToolResult) and result.seconds >= 0

    async def test_numbers_accepted_for_strings(self) -> None:
        """A number sent for a string parameter is taken as its text (models do send zip: 75001)."""

        @tool
        def echo(code: str) -> dict[str, str]:
            return {"code": code}

        result = await run_tool(spec(echo), '{"code": 75001}')
        assert (result.status, result.output) == ("ok", '{"code":"75001"}')

    async def test_async_tool_gets_typed_values(self) -> None:
        """Enums and nested models reach the handler as instances, not raw JSON."""
        result = await run_tool(
            spec(describe), '{"color": "green", "address": {"street": "1 rue", "zip": "75001"}}'
        )
        assert result.status == "ok"
        assert json.loads(result.output) == {
            "color": "green",
            "is_enum": True,
            "is_model": True,
            "zip": "75001",
            "at": None,
        }

    async def test_sync_tool_runs_off_the_loop(self) -> None:
        """A blocking sync tool runs in another thread while the event loop keeps going."""
        loop_thread = threading.get_ident()
        seen: list[int] = []

        @tool
        def blocking() -> str:
            seen.append(threading.get_ident())
            time.sleep(0.2)
            return "done"

        ticks = 0

        async def ticker() -> None:
            nonlocal ticks
            while True:
                await asyncio.sleep(0.01)
                ticks += 1

        task = asyncio.ensure_future(ticker())
        try:
            result = await run_tool(spec(blocking), "{}")
        finally:
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert result.output == '"done"'
        assert seen and seen[0] != loop_thread
        assert ticks >= 5

    async def test_context_follows_into_the_thread(self) -> None:
        """Context variables (structlog's bound call id) are visible inside a sync tool."""

        @tool
        def whoami() -> str:
            return str(structlog.contextvars.get_contextvars().get("call_id"))

        with structlog.contextvars.bound_contextvars(call_id="rtc_123"):
            result = await run_tool(spec(whoami), "{}")
        assert result.output == '"rtc_123"'

    async def test_empty_arguments_mean_none(self) -> None:
        """An empty arguments string is taken as {}."""

        @tool
        def nothing() -> str:
            return "ok"

        assert (await run_tool(spec(nothing), "")).status == "ok"

    async def test_invalid_json(self) -> None:
        """Arguments that are not JSON are reported to the model, and the tool is not run."""
        result = await run_tool(spec(add), '{"a": 1,')
        assert result.status == "invalid_arguments"
        assert "not valid JSON" in json.loads(result.output)["error"]

    async def test_not_an_object(self) -> None:
        """Arguments must be a JSON object."""
        result = await run_tool(spec(add), "[1, 2]")
        assert result.status == "invalid_arguments"
        assert "must be a JSON object, not list" in json.loads(result.output)["error"]

    async def test_wrong_type_names_field_and_value(self) -> None:
        """A wrong type names the field, what was expected and what was sent."""
        result = await run_tool(spec(add), '{"a": "two"}')
        assert result.status == "invalid_arguments"
        error = json.loads(result.output)["error"]
        assert error.startswith("Invalid arguments for add: 'a': Input should be a valid integer")
        assert '(got "two")' in error
        assert error.endswith("Call it again with corrected arguments.")

    async def test_missing_and_unknown_arguments(self) -> None:
        """Missing required and unexpected arguments are both named."""
        result = await run_tool(spec(add), '{"b": 1, "c": 2}')
        error = json.loads(result.output)["error"]
        assert "'a' is required" in error
        assert "'c' is not a parameter of add" in error

    async def test_nested_error_path(self) -> None:
        """An error inside a nested model gives the dotted path."""
        result = await run_tool(spec(describe), '{"color": "blue", "address": {"street": "x"}}')
        error = json.loads(result.output)["error"]
        assert "'color': Input should be 'red' or 'green'" in error
        assert "'address.zip' is required" in error

    async def test_async_timeout_cancels(self) -> None:
        """A hanging async tool is cancelled at its timeout and the model is told."""
        cancelled = asyncio.Event()

        @tool(timeout=0.05)
        async def hang() -> None:
            try:
                await asyncio.sleep(10)
            except asyncio.CancelledError:
                cancelled.set()
                raise

        result = await run_tool(spec(hang), "{}")
        assert result.status == "timeout"
        assert json.loads(result.output) == {
            "error": "The tool did not finish within 0.05 seconds."
        }
        assert cancelled.is_set()
        assert result.seconds < 1

    async def test_sync_timeout(self) -> None:
        """A blocking sync tool times out on time; its thread is left to finish on its own."""

        @tool
        def slow() -> None:
            time.sleep(0.5)

        started = time.perf_counter()
        result = await run_tool(spec(slow), "{}", default_timeout=0.05)
        assert result.status == "timeout"
        assert time.perf_counter() - started < 0.4

    async def test_tool_error_reaches_the_model(self) -> None:
        """ToolError's message is the output, from sync and async tools alike."""

        @tool
        def sync_fail() -> None:
            raise ToolError("No flights on that date; try another.")

        @tool
        async def async_fail() -> None:
            raise ToolError("Out of stock.")

        result = await run_tool(spec(sync_fail), "{}")
        assert (result.status, json.loads(result.output)) == (
            "error",
            {"error": "No flights on that date; try another."},
        )
        result = await run_tool(spec(async_fail), "{}")
        assert json.loads(result.output) == {"error": "Out of stock."}

    @pytest.mark.parametrize("kind", ["sync", "async"])
    async def test_other_exceptions_are_generic_and_logged(
        self, kind: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Any other exception gives the model a generic text and is logged with its traceback."""

        def boom() -> None:
            raise RuntimeError("password=hunter2 at db.internal:5432")

        async def aboom() -> None:
            boom()

        t = Tool(name="boom", description="", parameters={"type": "object"}, handler=boom)
        if kind == "async":
            t = dataclasses.replace(t, handler=aboom)
        # A fresh logger, so an earlier configure() with caching cannot bypass the capture.
        monkeypatch.setattr(runner, "log", structlog.get_logger(runner.__name__))
        with capture_logs() as logs:
            result = await run_tool(t, "{}")
        assert (result.status, json.loads(result.output)) == (
            "error",
            {"error": "The tool failed."},
        )
        assert "hunter2" not in result.output
        [entry] = [e for e in logs if e["event"] == "tool.failed"]
        assert entry["tool"] == "boom" and entry["log_level"] == "error"
        assert entry["exc_info"] is True

    async def test_validator_crash_is_a_failure(self) -> None:
        """A validator of the tool's own types that raises oddly does not escape run_tool."""

        @tool
        def f(p: Picky) -> None:
            pass

        result = await run_tool(spec(f), '{"p": {"value": 1}}')
        assert (result.status, result.output) == ("error", '{"error": "The tool failed."}')

    async def test_own_timeout_error_is_not_a_timeout(self) -> None:
        """A TimeoutError the tool raises itself is a failure, not the gateway's time limit."""

        @tool
        async def upstream() -> None:
            raise TimeoutError("connect to 10.0.0.1 timed out")

        result = await run_tool(spec(upstream), "{}")
        assert (result.status, json.loads(result.output)) == (
            "error",
            {"error": "The tool failed."},
        )

    @pytest.mark.parametrize(
        ("value", "output"),
        [
            ('{"a": 1}', '{"a": 1}'),  # already JSON: as is
            ("42", "42"),
            ("hello", '"hello"'),  # plain text: encoded
            ("héllo", '"héllo"'),  # non-ASCII kept
            (None, "null"),
            (True, "true"),
            (3.5, "3.5"),
            ([1, "a"], '[1,"a"]'),
            ({"k": [Color.RED]}, '{"k":["red"]}'),
            (Address(street="s", zip="1"), '{"street":"s","zip":"1","country":"FR"}'),
            (
                Reading("t1", dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)),
                '{"sensor":"t1","at":"2025-01-02T03:04:05Z"}',
            ),
        ],
    )
    async def test_return_value_encoding(self, value: Any, output: str) -> None:
        """Return values become JSON text: strings kept if JSON, the rest via pydantic."""

        @tool
        def give() -> Any:
            return value

        result = await run_tool(spec(give), "{}")
        assert (result.status, result.output) == ("ok", output)

    async def test_unserialisable_result_is_a_failure(self) -> None:
        """A return value without a JSON form is the tool's bug: generic error."""

        @tool
        def give() -> Any:
            return Opaque()

        result = await run_tool(spec(give), "{}")
        assert (result.status, result.output) == ("error", '{"error": "The tool failed."}')

    async def test_hand_built_tool_gets_raw_arguments(self) -> None:
        """A Tool built without @tool receives the decoded JSON object as keyword arguments."""
        t = Tool(
            name="echo",
            description="",
            parameters={"type": "object"},
            handler=lambda **kw: kw,
        )
        result = await run_tool(t, '{"x": [1]}')
        assert (result.status, result.output) == ("ok", '{"x":[1]}')

    async def test_busy_when_threads_run_out(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """With every sync-tool thread taken, a call fails fast instead of queueing forever."""
        monkeypatch.setattr(runner, "_thread_slots", threading.BoundedSemaphore(1))
        runner._thread_slots.acquire()
        result = await run_tool(spec(add), '{"a": 1}')
        assert (result.status, json.loads(result.output)) == (
            "error",
            {"error": "The tool is busy; try again later."},
        )

    async def test_caller_cancellation_propagates(self) -> None:
        """Cancelling the caller (the call ended) is not swallowed."""

        @tool
        async def hang() -> None:
            await asyncio.sleep(10)

        task = asyncio.ensure_future(run_tool(spec(hang), "{}"))
        await asyncio.sleep(0.01)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


class TestExamples:
    def test_current_time_utc(self) -> None:
        """The default zone is UTC and the answer has date, time, weekday and offset."""
        now = examples.current_time()
        assert now["timezone"] == "UTC" and now["utc_offset"] == "+00:00"
        parsed = dt.datetime.fromisoformat(now["iso"])
        assert abs((parsed - dt.datetime.now(dt.UTC)).total_seconds()) < 5
        assert now["date"] == parsed.date().isoformat()
        assert now["weekday"] == parsed.strftime("%A")

    @pytest.mark.parametrize(
        ("given", "zone"),
        [
            ("Europe/Paris", "Europe/Paris"),
            ("europe/paris", "Europe/Paris"),
            ("Tokyo", "Asia/Tokyo"),
            ("new york", "America/New_York"),
        ],
    )
    def test_current_time_zone_names(self, given: str, zone: str) -> None:
        """IANA names work, and so do a wrong case or a bare city that fits one zone."""
        assert examples.current_time(given)["timezone"] == zone

    @pytest.mark.parametrize("given", ["Mars/Olympus", "America", "../../etc/passwd", "/etc", ""])
    def test_current_time_unknown_zone(self, given: str) -> None:
        """An unknown zone is a ToolError saying how to name one."""
        with pytest.raises(ToolError, match="Use an IANA time zone name"):
            examples.current_time(given)

    def test_current_time_suggests(self) -> None:
        """An ambiguous or misspelt name gets suggestions."""
        with pytest.raises(ToolError, match="Did you mean 'Europe/Berlin'"):
            examples.current_time("Europe/Berlinn")

    @pytest.mark.parametrize(
        ("expression", "value"),
        [
            ("2 + 3 * 4", 14),
            ("(2 + 3) * 4", 20),
            ("7 // 2", 3),
            ("7 % 4", 3),
            ("7 / 2", 3.5),
            ("-2 ** 2", -4),
            ("+-+3", -3),
            ("2 ** 10", 1024),
            ("2 ** -1", 0.5),
            ("0.1 + 0.2", 0.3),
            ("sqrt(16)", 4.0),
            ("round(pi, 2)", 3.14),
            ("log(e)", 1.0),
            ("log(8, 2)", 3.0),
            ("max(1, 5, 3)", 5),
            ("sin(pi / 2)", 1.0),
            ("2 ** 999", 2**999),
        ],
    )
    def test_calculate_good(self, expression: str, value: float) -> None:
        """Arithmetic, precedence, powers and the allowed functions give the right value."""
        assert examples.calculate(expression) == value

    @pytest.mark.parametrize(
        ("expression", "message"),
        [
            ("1 / 0", "Division by zero"),
            ("sqrt(-1)", "Cannot compute that"),
            ("(-8) ** 0.5", "not a real number"),
            ("2 +", "Could not parse"),
            ("2 ^ 3", "Use \\*\\* for powers"),
            ("x + 1", "Unknown name 'x'"),
            ("'a' * 3", "Only numbers"),
            ("True + 1", "Only numbers"),
            ("1 < 2", "not arithmetic"),
            ("[1, 2]", "not arithmetic"),
            ("sqrt(x=4)", "not supported"),
        ],
    )
    def test_calculate_bad(self, expression: str, message: str) -> None:
        """Mistakes give a ToolError the model can act on."""
        with pytest.raises(ToolError, match=message):
            examples.calculate(expression)

    @pytest.mark.parametrize(
        "expression",
        [
            "__import__('os').system('true')",
            "().__class__.__bases__[0].__subclasses__()",
            "open('/etc/passwd').read()",
            "(lambda: 1)()",
            "[x for x in range(10**9)]",
            "exec('1')",
            "pi.real",
            "9 ** 9 ** 9",
            "10 ** 10 ** 10",
            "(2 ** 999) * (2 ** 999) * (2 ** 999)",
            "round(2 ** 900, -10 ** 9)",
            "exp(1000)",
            "1e308 * 10",
            "9" * 400,
            "-" * 499 + "1 + 1",
            "(" * 201 + "1" + ")" * 201,
            "1 +" * 200 + "1",
            "1" * 501,
        ],
    )
    def test_calculate_hostile(self, expression: str) -> None:
        """Code, huge results and deep nesting are refused quickly, never evaluated."""
        started = time.perf_counter()
        with pytest.raises(ToolError):
            examples.calculate(expression)
        assert time.perf_counter() - started < 0.5

    async def test_through_run_tool(self) -> None:
        """The examples work end to end through run_tool, ToolErrors included."""
        registry = load_tool_modules("gateway.tools.examples")
        calculate, current_time = registry.get("calculate"), registry.get("current_time")
        assert calculate is not None and current_time is not None
        assert calculate.timeout == 2.0
        assert "expression" in calculate.parameters["required"]
        result = await run_tool(calculate, '{"expression": "6 * 7"}')
        assert (result.status, result.output) == ("ok", "42")
        result = await run_tool(current_time, '{"timezone": "Nowhere/Land"}')
        assert result.status == "error"
        assert "Unknown time zone 'Nowhere/Land'" in json.loads(result.output)["error"]
