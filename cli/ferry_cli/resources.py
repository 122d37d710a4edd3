"""Where the `ferry` command finds the files of Ferry's stack it runs: template.yaml,
statemachine/deploy.asl.json and the handlers functions/<step>/app.py (the sandbox deploys them into moto).

In the repository (a checkout, or an editable install of it) they are the repository's own files. An installed
wheel (`pip install 'ferry[sandbox]'`, pipx) has no repository beside it: it carries copies in
ferry_cli/bundle/. In the repository, cli/ferry_cli/bundle/ holds only symbolic links to those files, and
pyproject.toml's package-data names what of them goes into the wheel; building the wheel copies what the links
point at, so the wheel's files are the repository's, byte for byte (tests/unit/test_wheel.py).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parent
BUNDLE = PACKAGE / "bundle"


def checkout() -> Path | None:
    """The repository this package is running from (cli/ferry_cli in it), or None when it is installed."""
    candidate = PACKAGE.parents[1]
    if (candidate / "cli" / "ferry_cli").resolve() == PACKAGE and (candidate / "template.yaml").is_file():
        return candidate
    return None


def root() -> Path:
    """The directory that holds template.yaml, with the paths the template names (its CodeUri and
    DefinitionUri) relative to it: the repository when running from it, else the copy in the wheel."""
    return checkout() or BUNDLE
