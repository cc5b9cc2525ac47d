"""Reading the synthesized template back in wiring terms (tags tie resources to wiring entries)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from infra import wiring
from infra.settings import TAG_BUCKET, TAG_DEAD_LETTER_OF, TAG_FUNCTION, TAG_QUEUE, TAG_SECRET, TAG_TABLE

Resources = dict[str, dict[str, Any]]


def resources(cfn: dict[str, Any], type_: str) -> Resources:
    return {lid: r for lid, r in cfn["Resources"].items() if r["Type"] == type_}


def tag(resource: dict[str, Any], key: str) -> str | None:
    for t in resource.get("Properties", {}).get("Tags", []) or []:
        if t.get("Key") == key:
            return str(t["Value"])
    return None


def by_tag(cfn: dict[str, Any], type_: str, key: str) -> dict[str, list[str]]:
    """tag value -> logical ids of resources of ``type_`` carrying it."""
    out: dict[str, list[str]] = {}
    for lid, r in resources(cfn, type_).items():
        value = tag(r, key)
        if value is not None:
            out.setdefault(value, []).append(lid)
    return out


def one(cfn: dict[str, Any], type_: str, key: str, value: str) -> str:
    ids = by_tag(cfn, type_, key).get(value, [])
    assert len(ids) == 1, f"expected exactly one {type_} tagged {key}={value}, found {ids}"
    return ids[0]


def function_id(cfn: dict[str, Any], name: str) -> str:
    return one(cfn, "AWS::Lambda::Function", TAG_FUNCTION, name)


def table_id(cfn: dict[str, Any], name: str) -> str:
    return one(cfn, "AWS::DynamoDB::Table", TAG_TABLE, name)


def queue_id(cfn: dict[str, Any], name: str) -> str:
    return one(cfn, "AWS::SQS::Queue", TAG_QUEUE, name)


def dlq_id(cfn: dict[str, Any], dead_letter_of: str) -> str:
    return one(cfn, "AWS::SQS::Queue", TAG_DEAD_LETTER_OF, dead_letter_of)


def bucket_id(cfn: dict[str, Any], name: str) -> str:
    return one(cfn, "AWS::S3::Bucket", TAG_BUCKET, name)


def secret_id(cfn: dict[str, Any], name: str) -> str:
    return one(cfn, "AWS::SecretsManager::Secret", TAG_SECRET, name)


def bus_id(cfn: dict[str, Any]) -> str:
    ids = [
        lid for lid, r in resources(cfn, "AWS::Events::EventBus").items() if r["Properties"]["Name"] == wiring.BUS_NAME
    ]
    assert len(ids) == 1, ids
    return ids[0]


def rest_api_id(cfn: dict[str, Any]) -> str:
    ids = list(resources(cfn, "AWS::ApiGateway::RestApi"))
    assert len(ids) == 1, ids
    return ids[0]


def rules_on_bus(cfn: dict[str, Any]) -> Resources:
    """The AWS::Events::Rule resources of the kassa bus."""
    bus = bus_id(cfn)
    return {
        lid: r
        for lid, r in resources(cfn, "AWS::Events::Rule").items()
        if refs(r["Properties"].get("EventBusName")) == {bus}
    }


def join_parts(value: Any, substitute: dict[str, str] | None = None) -> list[Any]:
    """A string or ``Fn::Join ["", [...]]`` as a list of parts with adjacent literals merged.

    ``substitute`` maps logical ids to literals: ``{"Ref": lid}`` parts are replaced by them.
    """
    substitute = substitute or {}
    if isinstance(value, str):
        raw: list[Any] = [value]
    else:
        separator, items = value["Fn::Join"]
        assert separator == "", value
        raw = [
            substitute.get(item["Ref"], item) if isinstance(item, dict) and set(item) == {"Ref"} else item
            for item in items
        ]
    parts: list[Any] = []
    for part in raw:
        if isinstance(part, str) and parts and isinstance(parts[-1], str):
            parts[-1] += part
        elif part != "":
            parts.append(part)
    return parts


def refs(value: Any) -> set[str]:
    """Logical ids referenced (Ref / Fn::GetAtt) anywhere inside a template value (pseudo parameters excluded)."""
    found: set[str] = set()
    if isinstance(value, dict):
        if set(value) == {"Ref"} and isinstance(value["Ref"], str) and not value["Ref"].startswith("AWS::"):
            found.add(value["Ref"])
        elif set(value) == {"Fn::GetAtt"}:
            target = value["Fn::GetAtt"]
            found.add(target[0] if isinstance(target, list) else str(target).split(".")[0])
        for v in value.values():
            found |= refs(v)
    elif isinstance(value, list):
        for v in value:
            found |= refs(v)
    return found


def role_of_function(cfn: dict[str, Any], function_logical_id: str) -> str:
    role = cfn["Resources"][function_logical_id]["Properties"]["Role"]
    (role_id,) = refs(role)
    return role_id


def role_statements(cfn: dict[str, Any], role_logical_id: str) -> list[dict[str, Any]]:
    """Every statement granted to a role: its inline policies and every AWS::IAM::Policy attached to it."""
    role = cfn["Resources"][role_logical_id]
    statements: list[dict[str, Any]] = []
    for policy in role["Properties"].get("Policies", []) or []:
        statements += policy["PolicyDocument"]["Statement"]
    for policy in resources(cfn, "AWS::IAM::Policy").values():
        if role_logical_id in refs(policy["Properties"].get("Roles", [])):
            statements += policy["Properties"]["PolicyDocument"]["Statement"]
    return statements


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def allowed(statements: list[dict[str, Any]]) -> Iterator[tuple[str, Any]]:
    """(action, resource) for every Allow statement."""
    for st in statements:
        if st.get("Effect") != "Allow":
            continue
        for action in as_list(st["Action"]):
            for resource in as_list(st.get("Resource", [])):
                yield action, resource


def actions_on(statements: list[dict[str, Any]], logical_id: str) -> set[str]:
    """Actions allowed on resources that reference ``logical_id``."""
    return {action for action, resource in allowed(statements) if logical_id in refs(resource)}


def actions_with_prefix(statements: list[dict[str, Any]], prefix: str) -> set[str]:
    return {action for action, _ in allowed(statements) if action.startswith(prefix)}


_RATE = re.compile(r"^rate\((\d+) (minute|minutes|hour|hours|day|days)\)$")
_UNIT_MINUTES = {"minute": 1, "minutes": 1, "hour": 60, "hours": 60, "day": 1440, "days": 1440}


def rate_minutes(expression: str) -> int:
    """``rate(1 hour)`` -> 60, ``rate(15 minutes)`` -> 15."""
    m = _RATE.match(expression)
    assert m, f"not a rate expression: {expression}"
    return int(m.group(1)) * _UNIT_MINUTES[m.group(2)]


def api_paths(cfn: dict[str, Any]) -> dict[str, str]:
    """AWS::ApiGateway::Resource logical id -> full path (``/v1/{proxy+}``)."""
    api_resources = resources(cfn, "AWS::ApiGateway::Resource")
    cache: dict[str, str] = {}

    def path(lid: str) -> str:
        if lid not in cache:
            props = api_resources[lid]["Properties"]
            parent = props["ParentId"]
            parent_ids = refs(parent) & set(api_resources)
            prefix = path(next(iter(parent_ids))) if parent_ids else ""
            cache[lid] = f"{prefix}/{props['PathPart']}"
        return cache[lid]

    return {lid: path(lid) for lid in api_resources}


def api_methods(cfn: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    """(HTTP method, full path) -> AWS::ApiGateway::Method properties."""
    paths = api_paths(cfn)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for method in resources(cfn, "AWS::ApiGateway::Method").values():
        props = method["Properties"]
        resource_ids = refs(props["ResourceId"]) & set(paths)
        path = paths[next(iter(resource_ids))] if resource_ids else "/"
        key = (props["HttpMethod"], path)
        assert key not in out, f"duplicate method {key}"
        out[key] = props
    return out


class SentinelResolver(wiring.Resolver):
    """Resolves every wiring resource to a marker, so expected and actual environments can be compared."""

    def table(self, name: str) -> str:
        return f"<table:{name}>"

    def queue_url(self, name: str) -> str:
        return f"<queue:{name}>"

    def secret(self, name: str) -> str:
        return f"<secret:{name}>"

    def bus(self) -> str:
        return "<bus>"

    def public_url(self) -> str:
        return "<public-url>"

    def bucket(self, name: str) -> str:
        return f"<bucket:{name}>"


def sentinel_target(cfn: dict[str, Any], value: str) -> str | None:
    """The logical id a sentinel stands for, or None when ``value`` is a plain value."""
    m = re.fullmatch(r"<(table|queue|secret|bucket):(.+)>|<bus>|<public-url>", value)
    if not m:
        return None
    if value == "<bus>":
        return bus_id(cfn)
    if value == "<public-url>":
        return rest_api_id(cfn)
    kind, name = m.group(1), m.group(2)
    return {"table": table_id, "queue": queue_id, "secret": secret_id, "bucket": bucket_id}[kind](cfn, name)
