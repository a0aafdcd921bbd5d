#!/usr/bin/env python3
"""Render the template-compatibility corpus with real Python Jinja2.

Registry authors write connector templates against Python's Jinja2 3.1 (the platform
renders with it); this runtime renders them with minijinja plus its own layer in
src/template/. `tests/integration/template_compat.rs` compares the two: it renders every case of
`tests/fixtures/jinja2/cases.json` through our environment and checks the text against the
Jinja2 output recorded here.

Input, `tests/fixtures/jinja2/cases.json`: a list of
    {"name": "...", "template": "...", "context": {...JSON...} or "name"}
where a context given by name is that entry of `tests/fixtures/jinja2/contexts.json` (the
API answers, caller request and values most cases share).

Output, `tests/fixtures/jinja2/expected.json`:
    {name: {"output": "<rendered text>"}}   or   {name: {"error": true}} when Jinja2 raises.

The environment mirrors the platform: the default `jinja2.Environment()` (autoescape off,
default `Undefined`, no trim_blocks) plus the platform filters and functions as docs/spec.md
section 2 defines them, including its `attr`, which reads JSON object keys. Cases are deterministic: `now()`, `get_secret()` and `jwt_encode()`
are deliberately not registered.

Regenerate after editing the corpus (requires `pip install jinja2==3.1.*`):

    python3 scripts/jinja2_fixtures.py

then run `cargo test --test integration template_compat` (which renders every case in both
`--template-undefined` modes: lenient must match Jinja2 wherever strict differs on purpose). `--check` (used by .ci/run) only verifies that
the committed expected.json is what Jinja2 renders.
"""

import base64
import copy
import json
import pathlib
import sys

import jinja2

ROOT = pathlib.Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "jinja2"

# The values `get_variable('name')` returns. tests/integration/template_compat.rs builds its
# `Variables` from the same dict (`VARIABLES` there); keep the two identical. The
# `variables_*` cases print these, so a drift shows up as a test failure.
VARIABLES = {
    "base_url": "https://api.example.com",
    "tenant": "acme-eu",
    "page_size": 50,
    "timeout": 2.5,
    "regions": ["eu-west-1", "us-east-1"],
    "features": {"beta": True, "limit": 10},
}


def from_json(value):
    """`from_json`: parse JSON text (invalid JSON raises, failing the run)."""
    return json.loads(value)


def json_encode(value):
    """`json_encode`: Python's json.dumps with its defaults."""
    return json.dumps(value)


def base64_encode(value):
    """`base64_encode`: standard base64 (padded) of the UTF-8 text."""
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    return base64.b64encode(str(value).encode("utf-8")).decode("ascii")


def base64_decode(value):
    """`base64_decode`: standard base64 to UTF-8 text."""
    return base64.b64decode(value).decode("utf-8")


def attr(environment, obj, name):
    """The platform's `attr`: reads a JSON object (dict) key, as the platform documents
    (`from_json | attr('access_token')`); anything else gets Jinja2's built-in `attr`."""
    if isinstance(obj, dict) and name in obj:
        return obj[name]
    return jinja2.filters.do_attr(environment, obj, name)


def get_variable(name):
    """`get_variable('name')`: a non-secret configuration value; undefined when missing."""
    if name in VARIABLES:
        return VARIABLES[name]
    return jinja2.Undefined(name=name)


def make_environment():
    env = jinja2.Environment()
    env.filters.update(
        from_json=from_json,
        json_encode=json_encode,
        base64_encode=base64_encode,
        base64_decode=base64_decode,
        attr=jinja2.pass_environment(attr),
    )
    env.globals["get_variable"] = get_variable
    return env


def main():
    cases = json.loads((FIXTURES / "cases.json").read_text(encoding="utf-8"))
    contexts = json.loads((FIXTURES / "contexts.json").read_text(encoding="utf-8"))
    env = make_environment()
    expected = {}
    for case in cases:
        name = case["name"]
        if name in expected:
            sys.exit(f"duplicate case name: {name}")
        context = case["context"]
        if isinstance(context, str):
            if context not in contexts:
                sys.exit(f"{name}: no context '{context}' in contexts.json")
            context = contexts[context]
        # A case that changes a list or dict in place must not change the next case's.
        context = copy.deepcopy(context)
        try:
            output = env.from_string(case["template"]).render(context)
            expected[name] = {"output": output}
        except Exception:  # any Jinja2 failure: ours must fail too
            expected[name] = {"error": True}
    text = json.dumps(expected, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    target = FIXTURES / "expected.json"
    if "--check" in sys.argv[1:]:
        # CI: the committed fixtures must be exactly what real Jinja2 renders today.
        if target.read_text(encoding="utf-8") != text:
            sys.exit("tests/fixtures/jinja2/expected.json is stale: run python3 scripts/jinja2_fixtures.py")
        print(f"{len(expected)} cases match real Jinja2 {jinja2.__version__}")
        return
    target.write_text(text, encoding="utf-8")
    errors = sum(1 for v in expected.values() if "error" in v)
    print(f"{len(expected)} cases written ({errors} expected errors)")


if __name__ == "__main__":
    main()
