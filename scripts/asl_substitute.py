#!/usr/bin/env python3
"""Apply template.yaml's DefinitionSubstitutions to the ASL files, for linting.

Step Functions only sees the ASL after CloudFormation has replaced every
`${Key}` with the state machine's DefinitionSubstitutions, so the ASL on disk
is not valid ASL (a Task's "Resource": "${LockFunctionArn}" is not an ARN).
This does the replacement offline with the same template reader and physical
names the sandbox uses (ferry_cli.sandbox.template), and writes one
substituted file per ASL file.

A `${Key}` the substitutions do not define is an error naming the key and the
file, as it would be at deploy time; a substitution no ASL file uses is
reported as a warning.

Usage:
    asl_substitute.py [--template template.yaml] --out-dir DIR

Prints the path of each file written. Exit status 1 on any error.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

from ferry_cli.sandbox.template import Resolver, Template, load_yaml, physical_resources

KEY_RE = re.compile(r"\$\{([^}]*)\}")
PARAMETERS = {"EnvironmentName": "lint", "Clusters": ["lint"]}


class SubstitutionError(Exception):
    pass


def load_template(path: Path) -> dict[str, Any]:
    return load_yaml(path)


def keys_used(asl_text: str) -> set[str]:
    return set(KEY_RE.findall(asl_text))


def substitute(asl_text: str, values: dict[str, str], source: str) -> str:
    """Replace each ${Key}; an undefined key is an error naming it."""
    missing = sorted(keys_used(asl_text) - set(values))
    if missing:
        raise SubstitutionError(
            f"{source}: the ASL uses {', '.join('${' + k + '}' for k in missing)}, "
            "which the state machine's DefinitionSubstitutions in template.yaml do not define"
        )
    return KEY_RE.sub(lambda m: values[m.group(1)], asl_text)


def render_all(template_path: Path, out_dir: Path, warn=lambda msg: print(msg, file=sys.stderr)) -> list[Path]:
    """Substitute the ASL of every state machine in the template. Returns the files written."""
    root = template_path.parent
    template = Template(root, load_template(template_path))
    resolver = Resolver(
        *physical_resources(
            template, account="123456789012", region="us-east-1", environment="lint", parameters=PARAMETERS
        )
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    machines = {
        k: v
        for k, v in template.resources.items()
        if v.get("Type") in ("AWS::Serverless::StateMachine", "AWS::StepFunctions::StateMachine")
    }
    for logical_id, resource in machines.items():
        props = resource.get("Properties", {})
        rel = props["DefinitionUri"]
        values = {k: str(v) for k, v in resolver.resolve(props.get("DefinitionSubstitutions") or {}).items()}
        text = (root / rel).read_text()
        unused = sorted(set(values) - keys_used(text))
        if unused:
            warn(f"warning: {rel}: DefinitionSubstitutions of {logical_id} not used by the ASL: {', '.join(unused)}")
        target = out_dir / Path(rel).name
        target.write_text(substitute(text, values, rel))
        written.append(target)
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--template", type=Path, default=Path("template.yaml"))
    parser.add_argument("--out-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        for path in render_all(args.template, args.out_dir):
            print(path)
    except (SubstitutionError, KeyError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
