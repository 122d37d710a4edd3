"""Read template.yaml the way the sandbox needs it.

The sandbox builds the stack from the real template (functions, their
handlers and environment, the state machine's DefinitionSubstitutions, the
EventBridge rule patterns), so a change to the template changes the sandbox.
Only the intrinsic functions the template uses are resolved; an unknown one is
an error rather than a silent guess.
"""

from __future__ import annotations

import copy
import functools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

TAGS = (
    "Ref",
    "GetAtt",
    "Sub",
    "Join",
    "Split",
    "Select",
    "If",
    "Equals",
    "Not",
    "And",
    "Or",
    "FindInMap",
    "GetAZs",
    "ImportValue",
    "Base64",
    "Condition",
    "Cidr",
)


class _CfnLoader(yaml.SafeLoader):
    """A YAML loader that turns `!Ref x` into `{"Ref": "x"}` and so on."""


def _constructor(tag: str) -> Callable:
    key = tag if tag in ("Ref", "Condition") else f"Fn::{tag}"

    def construct(loader: yaml.Loader, node: yaml.Node) -> dict:
        if isinstance(node, yaml.ScalarNode):
            value: Any = loader.construct_scalar(node)
            if tag == "GetAtt":
                value = value.split(".", 1)
        elif isinstance(node, yaml.SequenceNode):
            value = loader.construct_sequence(node, deep=True)
        else:
            value = loader.construct_mapping(node, deep=True)
        return {key: value}

    return construct


for _tag in TAGS:
    _CfnLoader.add_constructor(f"!{_tag}", _constructor(_tag))


def load_yaml(path: Path) -> dict[str, Any]:
    """The template as data; a fresh copy each call (callers may change it), parsed once per content."""
    return copy.deepcopy(_parsed(path.read_text()))


@functools.lru_cache(maxsize=4)
def _parsed(text: str) -> dict[str, Any]:
    # PyYAML in pure Python takes ~0.1 s on template.yaml: every sandbox of a test run loads the same one.
    return yaml.load(text, Loader=_CfnLoader)


@dataclass
class Function:
    logical_id: str
    code_uri: str
    handler: str
    environment: dict[str, Any]
    rules: dict[str, dict[str, Any]] = field(default_factory=dict)  # event name -> EventBridge pattern
    invoke_config: dict[str, Any] = field(default_factory=dict)  # EventInvokeConfig: asynchronous retries, OnFailure
    schedules: dict[str, dict[str, Any]] = field(default_factory=dict)  # event name -> ScheduleV2 properties


@dataclass
class Template:
    root: Path
    body: dict[str, Any]

    @classmethod
    def load(cls, root: Path) -> "Template":
        return cls(root, load_yaml(root / "template.yaml"))

    @property
    def resources(self) -> dict[str, Any]:
        return self.body.get("Resources", {})

    def of_type(self, kind: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.resources.items() if v.get("Type") == kind}

    def functions(self) -> dict[str, Function]:
        globals_fn = self.body.get("Globals", {}).get("Function", {})
        global_env = globals_fn.get("Environment", {}).get("Variables", {})
        found = {}
        for logical_id, resource in self.of_type("AWS::Serverless::Function").items():
            props = resource.get("Properties", {})
            env = {**global_env, **props.get("Environment", {}).get("Variables", {})}
            rules = {
                name: event["Properties"]["Pattern"]
                for name, event in props.get("Events", {}).items()
                if event.get("Type") == "EventBridgeRule"
            }
            schedules = {
                name: event["Properties"]
                for name, event in props.get("Events", {}).items()
                if event.get("Type") == "ScheduleV2"
            }
            found[logical_id] = Function(
                logical_id,
                props["CodeUri"],
                props.get("Handler", globals_fn.get("Handler")),
                env,
                rules,
                props.get("EventInvokeConfig") or {},
                schedules,
            )
        return found

    def state_machine(self) -> tuple[str, dict[str, Any], str]:
        """(logical id, properties, ASL file path) of the one state machine."""
        machines = self.of_type("AWS::Serverless::StateMachine")
        if len(machines) != 1:
            raise ValueError(
                f"template.yaml must declare exactly one AWS::Serverless::StateMachine, found {len(machines)}"
            )
        logical_id, resource = next(iter(machines.items()))
        props = resource["Properties"]
        return logical_id, props, props["DefinitionUri"]


class Resolver:
    """Resolves intrinsic functions against the sandbox's physical resources."""

    def __init__(self, refs: dict[str, str], attrs: dict[tuple[str, str], str], pseudo: dict[str, str]) -> None:
        self.refs = refs  # logical id or parameter -> Ref value
        self.attrs = attrs  # (logical id, attribute) -> value
        self.pseudo = pseudo  # AWS::Region, AWS::AccountId, AWS::Partition, ...

    def ref(self, name: str) -> Any:
        if name in self.pseudo:
            return self.pseudo[name]
        if name in self.refs:
            return self.refs[name]
        raise KeyError(f"template.yaml: the sandbox cannot resolve !Ref {name}")

    def resolve(self, value: Any) -> Any:
        if isinstance(value, list):
            return [self.resolve(v) for v in value]
        if not isinstance(value, dict):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                return self.ref(arg)
            if key == "Fn::GetAtt":
                logical_id, attribute = arg if isinstance(arg, list) else arg.split(".", 1)
                try:
                    return self.attrs[(logical_id, attribute)]
                except KeyError:
                    raise KeyError(
                        f"template.yaml: the sandbox cannot resolve !GetAtt {logical_id}.{attribute}"
                    ) from None
            if key == "Fn::Sub":
                return self._sub(arg)
            if key == "Fn::Join":
                sep, items = arg
                return sep.join(str(i) for i in self._flat(self.resolve(items)))
            if key == "Fn::Split":
                sep, text = arg
                return self.resolve(text).split(sep)
            if key == "Fn::Select":
                index, items = arg
                return self.resolve(items)[int(self.resolve(index))]
            if key.startswith("Fn::") or key == "Condition":
                raise KeyError(f"template.yaml: the sandbox does not resolve {key}")
        return {k: self.resolve(v) for k, v in value.items()}

    @staticmethod
    def _flat(items: Any) -> list:
        out: list = []
        for item in items if isinstance(items, list) else [items]:
            out.extend(item if isinstance(item, list) else [item])
        return out

    def _sub(self, arg: Any) -> str:
        text, local = (arg, {}) if isinstance(arg, str) else (arg[0], {k: self.resolve(v) for k, v in arg[1].items()})
        out, i = [], 0
        while i < len(text):
            start = text.find("${", i)
            if start < 0:
                out.append(text[i:])
                break
            end = text.index("}", start)
            out.append(text[i:start])
            name = text[start + 2 : end]
            if name.startswith("!"):
                out.append("${" + name[1:] + "}")
            elif name in local:
                out.append(str(local[name]))
            elif "." in name:
                out.append(str(self.resolve({"Fn::GetAtt": name.split(".", 1)})))
            else:
                out.append(str(self.ref(name)))
            i = end + 1
        return "".join(out)


def substitute_definition(asl_text: str, substitutions: dict[str, str]) -> dict[str, Any]:
    """Apply DefinitionSubstitutions to the ASL text, refusing unknown keys."""
    result, i = [], 0
    while True:
        start = asl_text.find("${", i)
        if start < 0:
            result.append(asl_text[i:])
            break
        end = asl_text.index("}", start)
        key = asl_text[start + 2 : end]
        if key not in substitutions:
            raise KeyError(f"the ASL uses ${{{key}}}, which the template's DefinitionSubstitutions do not define")
        result.append(asl_text[i:start])
        result.append(str(substitutions[key]))
        i = end + 1
    return json.loads("".join(result))


def physical_resources(
    template: Template, *, account: str, region: str, environment: str, parameters: dict[str, Any]
) -> tuple[dict[str, Any], dict[tuple[str, str], str], dict[str, Any]]:
    """(Ref values, GetAtt values, pseudo parameters) for a stack made from `template`.

    Names are what CloudFormation would use: the resource's explicit name
    property where it has one (resolved against the parameters), else a name
    derived from the environment and logical id.
    """
    acct, env = account, environment
    pseudo = {
        "AWS::Region": region,
        "AWS::AccountId": acct,
        "AWS::Partition": "aws",
        "AWS::StackName": f"ferry-{env}",
        "AWS::URLSuffix": "amazonaws.com",
        "AWS::NoValue": None,
    }
    params: dict[str, Any] = {}
    for name, spec in template.body.get("Parameters", {}).items():
        default = spec.get("Default")
        if spec.get("Type") == "CommaDelimitedList" and isinstance(default, str):
            default = default.split(",")
        params[name] = default
    params.update(parameters)
    refs: dict[str, Any] = dict(params)
    attrs: dict[tuple[str, str], str] = {}
    names = Resolver(dict(params), {}, pseudo)  # explicit names use only parameters

    def named(props: dict[str, Any], prop: str, default: str) -> str:
        return str(names.resolve(props[prop])) if prop in props else default

    for logical_id, resource in template.resources.items():
        kind, props = resource["Type"], resource.get("Properties", {})
        lower = logical_id.lower()
        if kind == "AWS::S3::Bucket":
            name = named(props, "BucketName", f"ferry-{env}-{lower}-{acct}")
            refs[logical_id] = name
            attrs[(logical_id, "Arn")] = f"arn:aws:s3:::{name}"
        elif kind == "AWS::DynamoDB::Table":
            name = named(props, "TableName", f"ferry-{env}-{logical_id}")
            refs[logical_id] = name
            attrs[(logical_id, "Arn")] = f"arn:aws:dynamodb:{region}:{acct}:table/{name}"
        elif kind == "AWS::Serverless::Function":
            name = named(props, "FunctionName", f"ferry-{env}-{logical_id}")
            refs[logical_id] = name
            attrs[(logical_id, "Arn")] = f"arn:aws:lambda:{region}:{acct}:function:{name}"
            for event, spec in (props.get("Events") or {}).items():  # the rules SAM generates: <Function><Event>
                if spec.get("Type") == "EventBridgeRule":
                    rule = named(spec.get("Properties", {}), "RuleName", f"{logical_id}{event}")
                    refs[f"{logical_id}{event}"] = rule
                    attrs[(f"{logical_id}{event}", "Arn")] = f"arn:aws:events:{region}:{acct}:rule/{rule}"
                elif spec.get("Type") == "ScheduleV2":  # SAM's AWS::Scheduler::Schedule, in the default group
                    schedule_props = spec.get("Properties", {})
                    schedule = named(schedule_props, "Name", f"{logical_id}{event}")
                    group = named(schedule_props, "GroupName", "default")
                    refs[f"{logical_id}{event}"] = schedule
                    attrs[(f"{logical_id}{event}", "Arn")] = (
                        f"arn:aws:scheduler:{region}:{acct}:schedule/{group}/{schedule}"
                    )
        elif kind == "AWS::Serverless::LayerVersion":
            name = named(props, "LayerName", f"ferry-{env}-{logical_id}")
            refs[logical_id] = f"arn:aws:lambda:{region}:{acct}:layer:{name}:1"
        elif kind == "AWS::Serverless::StateMachine":
            name = named(props, "Name", f"ferry-{env}-{logical_id}")
            arn = f"arn:aws:states:{region}:{acct}:stateMachine:{name}"
            refs[logical_id] = arn
            attrs[(logical_id, "Name")] = name
            attrs[(logical_id, "Arn")] = arn
        elif kind == "AWS::SQS::Queue":
            name = named(props, "QueueName", f"ferry-{env}-{logical_id}")
            refs[logical_id] = f"https://sqs.{region}.amazonaws.com/{acct}/{name}"
            attrs[(logical_id, "Arn")] = f"arn:aws:sqs:{region}:{acct}:{name}"
            attrs[(logical_id, "QueueName")] = name
        elif kind == "AWS::Logs::LogGroup":
            name = named(props, "LogGroupName", f"/ferry/{env}/{logical_id}")
            refs[logical_id] = name
            attrs[(logical_id, "Arn")] = f"arn:aws:logs:{region}:{acct}:log-group:{name}:*"
            attrs[(logical_id, "Name")] = name
        elif kind == "AWS::IAM::ManagedPolicy":  # Ref: the policy's ARN (a function's Policies attach it by !Ref)
            name = named(props, "ManagedPolicyName", f"ferry-{env}-{logical_id}")
            refs[logical_id] = f"arn:aws:iam::{acct}:policy{named(props, 'Path', '/')}{name}"
        elif kind == "AWS::SNS::Topic":
            arn = f"arn:aws:sns:{region}:{acct}:" + named(props, "TopicName", f"ferry-{env}-{logical_id}")
            refs[logical_id] = arn
            attrs[(logical_id, "TopicArn")] = arn
        else:
            refs[logical_id] = f"{logical_id}-{env}"
            attrs[(logical_id, "Arn")] = f"arn:aws:{lower}:{region}:{acct}:{logical_id}"
    return refs, attrs, pseudo
