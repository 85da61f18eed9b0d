"""``${VAR}`` in configuration values, taken from the environment.

Substitution works on the YAML node tree, after parsing and before the values are
built, so a variable can never add structure: whatever it holds stays inside the
one scalar it was written in. Only values are substituted, never keys.

- ``${NAME}``: the variable's value; unset is an error.
- ``${NAME:-default}``: the default when the variable is unset or empty.
- ``${NAME-default}``: the default only when the variable is unset.
- ``$$``: a literal ``$``. Any other ``$`` is taken as written.

Names are ``[A-Za-z_][A-Za-z0-9_]*``; a default is literal text up to the first
``}`` and holds no reference of its own. A plain (unquoted, untagged) scalar is
typed again by YAML's rules once substituted, so ``${HB:-30}`` is the number 30;
a quoted one stays a string.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Mapping

import yaml

from volta.core._settings import ConfigProblem, describe, join_key

_REFERENCE = re.compile(r"\$(?:\$|\{(?P<body>[^}]*)\}|(?P<unclosed>\{))")
_BODY = re.compile(r"(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<operator>:?-)(?P<default>.*))?", re.S)
_FORMS = "expected ${NAME}, ${NAME:-default} or ${NAME-default} ($$ is a literal $)"
_MERGE_TAG = "tag:yaml.org,2002:merge"


def substitute(text: str, environ: Mapping[str, str], *, secret: bool) -> tuple[str, list[str]]:
    """``text`` with its references replaced, and why each bad one could not be.

    Args:
        text: the scalar as written.
        environ: the variables.
        secret: the scalar is a password or the like: reasons never quote it.

    Returns:
        The substituted text (meaningful only when there are no reasons), and the
        reasons, one per bad reference, in order.
    """
    reasons: list[str] = []

    def replace(match: re.Match[str]) -> str:
        reference = match[0]
        if reference == "$$":
            return "$"
        body = _BODY.fullmatch(match["body"] or "") if match["unclosed"] is None else None
        if body is None or "${" in (body["default"] or ""):
            written = text[match.start() :] if match["unclosed"] else reference
            shown = "" if secret else f" {describe(written)}"
            reasons.append(f"malformed variable reference{shown}: {_FORMS}")
            return reference
        name, operator, default = body["name"], body["operator"], body["default"]
        value = environ.get(name)
        if (operator == ":-" and not value) or (operator == "-" and value is None):
            return default
        if value is None:
            reasons.append(
                f"environment variable {name} is not set (write ${{{name}:-...}} for a default)"
            )
            return reference
        return value

    return _REFERENCE.sub(replace, text), reasons


def _field_name(key: str | None) -> str:
    """The last field name of a key path (``nats.url[0]`` -> ``url``)."""
    return (key or "").rsplit(".", 1)[-1].split("[", 1)[0]


def interpolate(
    root: yaml.Node,
    environ: Mapping[str, str],
    *,
    plain: Collection[int],
    resolve: Callable[[str], str],
    secrets: Collection[str],
) -> list[ConfigProblem]:
    """Substitute the references in every value scalar under ``root``, in place.

    A scalar with a bad reference is left as written, and each bad reference is a
    problem at the scalar's key path (the path where an anchored node is first
    written, for an alias), in document order.

    Args:
        root: the composed document.
        environ: the variables.
        plain: ids of the plain, untagged scalar nodes, typed again once substituted.
        resolve: the YAML tag that a plain scalar with this text has.
        secrets: field names whose values are never quoted (``password``, ``token``).
    """
    problems: list[ConfigProblem] = []
    seen: set[int] = set()
    # Depth-first in document order, without recursion (a document may nest deeply).
    pending: list[tuple[yaml.Node, str | None]] = [(root, None)]
    while pending:
        node, path = pending.pop()
        if id(node) in seen:
            continue  # an alias: substituted where its anchor is
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            if "$" not in node.value:
                continue
            value, reasons = substitute(node.value, environ, secret=_field_name(path) in secrets)
            problems += [ConfigProblem(path, reason) for reason in reasons]
            if not reasons:
                node.value = value
                if id(node) in plain:
                    node.tag = resolve(value)
        elif isinstance(node, yaml.SequenceNode):
            items = [(item, f"{path or ''}[{index}]") for index, item in enumerate(node.value)]
            pending += reversed(items)
        elif isinstance(node, yaml.MappingNode):
            children: list[tuple[yaml.Node, str | None]] = []
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    children.append((value_node, path))  # merged keys belong to this mapping
                else:
                    key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
                    children.append((value_node, join_key(path, str(key))))
            pending += reversed(children)
    return problems
