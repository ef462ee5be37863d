"""Breaking-change detection between two JSON Schemas of the same event (pure, no I/O).

Policy: consumers are deployed before producers start using a contract change, and
events already on a topic (retention, replays, dead letters) stay readable. So:

* Additions a consumer can learn about first are allowed: a new optional field, a new
  enum value, a looser length or range limit, a field that stops being required
  (pydantic producers still emit every field, defaults included).
* Everything that makes an event valid under the old schema invalid under the new
  one is breaking: a removed field (``extra="forbid"`` rejects it), a new required
  field, a field becoming required, a removed enum value, a new or tighter
  constraint (enum, const, format, pattern, length, range, ``additionalProperties``).
* Any change of a field's JSON types is breaking in both directions, including a field
  becoming nullable (consumer code that reads it never handled ``None``) or losing
  ``null`` (old producers and retained events still send it).

New enum values are therefore not reported: a consumer must be upgraded to the new
contract before any producer emits the new value, because pydantic enums refuse
values they do not know.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

Schema = Mapping[str, Any]

# Where a data value sits inside an array, in the reported paths.
ITEM = "*"

_TYPE_OF_VALUE: tuple[tuple[type, str], ...] = (
    (bool, "boolean"),
    (int, "integer"),
    (float, "number"),
    (str, "string"),
    (list, "array"),
    (dict, "object"),
    (type(None), "null"),
)
_UPPER_BOUNDS = ("maxLength", "maxItems", "maxProperties", "maximum", "exclusiveMaximum")
_LOWER_BOUNDS = ("minLength", "minItems", "minProperties", "minimum", "exclusiveMinimum")
_EXACT_KEYWORDS = ("const", "format", "pattern", "multipleOf")


def breaking_changes(old: Schema, new: Schema) -> list[str]:
    """Return one ``"<path>: <what broke>"`` line per breaking change from ``old`` to ``new``."""
    return list(_Comparison(old, new).compare(old, new, ""))


def _value_type(value: Any) -> str:
    """Return the JSON type name of a JSON value."""
    for python_type, name in _TYPE_OF_VALUE:
        if isinstance(value, python_type):
            return name
    return "unknown"


class _Comparison:
    """Walks an old and a new schema side by side, each resolved against its own root."""

    def __init__(self, old_root: Schema, new_root: Schema) -> None:
        self.old_root = old_root
        self.new_root = new_root
        self.visiting: set[tuple[int, int]] = set()
        # Resolving a node always yields the same object, so recursive models terminate;
        # keyed by root too because the two schemas may share unchanged sub-dicts.
        self.resolved: dict[tuple[int, int], tuple[Schema, Schema]] = {}
        self.split: dict[tuple[int, int], tuple[Schema, bool, list[Schema]]] = {}

    def resolve(self, node: Schema, root: Schema) -> Schema:
        """Return ``node`` with local ``$ref`` and single-element ``allOf`` wrappers followed."""
        cached = self.resolved.get((id(root), id(node)))
        if cached is not None and cached[0] is node:
            return cached[1]
        current = node
        seen: set[str] = set()
        while True:
            ref = current.get("$ref")
            all_of = current.get("allOf")
            if isinstance(ref, str):
                if ref in seen or not ref.startswith("#"):
                    raise ValueError(f"cannot resolve $ref {ref!r}")
                seen.add(ref)
                target: Any = root
                for part in ref[1:].split("/")[1:]:
                    target = target[part.replace("~1", "/").replace("~0", "~")]
                # keywords next to a $ref (allowed in 2020-12) refine the target
                siblings = {key: value for key, value in current.items() if key != "$ref"}
                current = {**target, **siblings} if siblings else target
            elif isinstance(all_of, list) and len(all_of) == 1:
                rest = {key: value for key, value in current.items() if key != "allOf"}
                current = {**rest, **all_of[0]}
            else:
                break
        self.resolved[(id(root), id(node))] = (node, current)
        return current

    def variants(self, node: Schema, root: Schema) -> tuple[bool, list[Schema]]:
        """Return whether ``node`` accepts null, and its non-null alternatives, resolved."""
        cached = self.split.get((id(root), id(node)))
        if cached is not None and cached[0] is node:
            return cached[1], cached[2]
        nullable, alternatives = self.split_variants(self.resolve(node, root), root)
        self.split[(id(root), id(node))] = (node, nullable, alternatives)
        return nullable, alternatives

    def split_variants(self, node: Schema, root: Schema) -> tuple[bool, list[Schema]]:
        """Return whether a resolved node accepts null, and its non-null alternatives."""
        branches = node.get("anyOf", node.get("oneOf"))
        if isinstance(branches, list):
            nullable = False
            alternatives: list[Schema] = []
            for branch in branches:
                branch_nullable, branch_alternatives = self.variants(branch, root)
                nullable = nullable or branch_nullable
                alternatives.extend(branch_alternatives)
            return nullable, alternatives
        declared = node.get("type")
        if isinstance(declared, list):
            kept = [name for name in declared if name != "null"]
            return "null" in declared, [{**node, "type": name} for name in kept]
        if declared == "null":
            return True, []
        if "enum" in node and None in node["enum"]:
            values = [value for value in node["enum"] if value is not None]
            return True, [{**node, "enum": values}] if values else []
        if "const" in node and node["const"] is None:
            return True, []
        return False, [node]

    def compare(self, old: Schema, new: Schema, path: str) -> Iterator[str]:
        """Yield the breaking changes between two schema nodes describing ``path``."""
        where = path or "/"
        old_nullable, old_alternatives = self.variants(old, self.old_root)
        new_nullable, new_alternatives = self.variants(new, self.new_root)
        old_kinds = _kinds(old_alternatives)
        new_kinds = _kinds(new_alternatives)
        if old_kinds != new_kinds or old_nullable != new_nullable:
            before = _describe(old_kinds, old_nullable)
            after = _describe(new_kinds, new_nullable)
            yield f"{where}: type changed from {before} to {after}"
        for kind in sorted(set(old_kinds) & set(new_kinds)):
            old_same = [alt for alt in old_alternatives if _kind(alt) == kind]
            new_same = [alt for alt in new_alternatives if _kind(alt) == kind]
            for old_alt, new_alt in _pair(old_same, new_same):
                yield from self.compare_same_kind(old_alt, new_alt, kind, path)

    def compare_same_kind(self, old: Schema, new: Schema, kind: str, path: str) -> Iterator[str]:
        """Yield the breaking changes between two resolved alternatives of one JSON type."""
        pair = (id(old), id(new))
        if pair in self.visiting:  # a recursive model: this pair is already being compared
            return
        self.visiting.add(pair)
        try:
            yield from _constraint_changes(old, new, path or "/")
            if kind == "object":
                yield from self.compare_objects(old, new, path)
            elif kind == "array":
                old_items, new_items = old.get("items"), new.get("items")
                if isinstance(old_items, Mapping) and isinstance(new_items, Mapping):
                    yield from self.compare(old_items, new_items, f"{path}/{ITEM}")
                elif isinstance(new_items, Mapping) and new_items and not old_items:
                    yield f"{path or '/'}: array items became constrained"
        finally:
            self.visiting.discard(pair)

    def compare_objects(self, old: Schema, new: Schema, path: str) -> Iterator[str]:
        """Yield the breaking changes between two object schemas: fields and extras."""
        old_properties: Mapping[str, Schema] = old.get("properties", {})
        new_properties: Mapping[str, Schema] = new.get("properties", {})
        old_required = set(old.get("required", ()))
        new_required = set(new.get("required", ()))
        for name, old_property in old_properties.items():
            field_path = f"{path}/{name}"
            if name not in new_properties:
                yield f"{field_path}: field removed"
                continue
            if name in new_required and name not in old_required:
                yield f"{field_path}: field became required"
            yield from self.compare(old_property, new_properties[name], field_path)
        for name in sorted(new_properties.keys() - old_properties.keys()):
            if name in new_required:
                yield f"{path}/{name}: new required field"
        for name in sorted(new_required - old_properties.keys() - new_properties.keys()):
            yield f"{path}/{name}: new required field"
        old_extra = old.get("additionalProperties", True)
        new_extra = new.get("additionalProperties", True)
        if new_extra is False and old_extra is not False:
            yield f"{path or '/'}: additional properties no longer allowed"
        elif isinstance(old_extra, Mapping) and isinstance(new_extra, Mapping):
            yield from self.compare(old_extra, new_extra, f"{path}/{ITEM}")


def _kind(node: Schema) -> str:
    """Return the single JSON type a resolved, non-null alternative describes."""
    declared = node.get("type")
    if isinstance(declared, str):
        return declared
    if "const" in node:
        return _value_type(node["const"])
    if "enum" in node:
        types = sorted({_value_type(value) for value in node["enum"]})
        return types[0] if len(types) == 1 else "|".join(types)
    if "properties" in node:
        return "object"
    if "items" in node:
        return "array"
    return "any"


def _kinds(alternatives: list[Schema]) -> list[str]:
    """Return the sorted distinct JSON types of some alternatives."""
    return sorted({_kind(alt) for alt in alternatives})


def _describe(kinds: list[str], nullable: bool) -> str:
    """Return a type set as ``"string | null"``."""
    names = [*kinds, "null"] if nullable else kinds
    return " | ".join(names) if names else "nothing"


def _pair(old: list[Schema], new: list[Schema]) -> list[tuple[Schema, Schema]]:
    """Return the alternatives of one JSON type matched old to new, by title when many."""
    if len(old) == 1 and len(new) == 1:
        return [(old[0], new[0])]
    new_by_title = {alt.get("title"): alt for alt in new if alt.get("title")}
    return [(alt, new_by_title[alt["title"]]) for alt in old if alt.get("title") in new_by_title]


def _constraint_changes(old: Schema, new: Schema, where: str) -> Iterator[str]:
    """Yield the value constraints ``new`` adds or tightens compared with ``old``."""
    if "enum" in new:
        if "enum" not in old:
            yield f"{where}: now restricted to the values {new['enum']!r}"
        else:
            removed = [value for value in old["enum"] if value not in new["enum"]]
            if removed:
                yield f"{where}: enum values removed: {removed!r}"
    for keyword in _EXACT_KEYWORDS:
        if keyword in new and (keyword not in old or old[keyword] != new[keyword]):
            before = repr(old[keyword]) if keyword in old else "none"
            yield f"{where}: {keyword} changed from {before} to {new[keyword]!r}"
    for keyword in _UPPER_BOUNDS:
        if keyword in new and (keyword not in old or new[keyword] < old[keyword]):
            before = old.get(keyword, "none")
            yield f"{where}: {keyword} tightened from {before} to {new[keyword]}"
    for keyword in _LOWER_BOUNDS:
        if keyword in new and (keyword not in old or new[keyword] > old[keyword]):
            before = old.get(keyword, "none")
            yield f"{where}: {keyword} tightened from {before} to {new[keyword]}"
