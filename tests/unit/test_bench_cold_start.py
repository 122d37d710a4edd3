"""bench/cold_start.py: the template is read into one probe per function, -X importtime output is parsed right,
--bytecode lambda imports from the layer as its Makefile builds it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_spec = importlib.util.spec_from_file_location("bench_cold_start", ROOT / "bench" / "cold_start.py")
cold_start = importlib.util.module_from_spec(_spec)
sys.modules["bench_cold_start"] = cold_start  # dataclasses look their module up
_spec.loader.exec_module(cold_start)

IMPORTTIME = f"""import time: self [us] | cumulative | imported package
import time:        50 |         50 | encodings
{cold_start.BEGIN}
import time:        10 |         10 |       jsonschema._utils
import time:       300 |        310 |     jsonschema
import time:        40 |        350 |   ferry.validation
import time:         5 |          5 |     urllib3
import time:       100 |        105 |   boto3
import time:        20 |        475 | app
"""


def test_importtime_tree_chains_and_packages():
    nodes = cold_start.parse_importtime(IMPORTTIME)
    by_name = {n.name: n for n in nodes}
    assert "encodings" not in by_name  # before the marker: interpreter start-up
    assert by_name["jsonschema._utils"].chain() == ["jsonschema", "ferry.validation", "app"]
    assert by_name["urllib3"].chain() == ["boto3", "app"]
    top = cold_start.top_modules(nodes, "app", {"app", "ferry"})
    # where our code enters a package, heaviest first; a package's own imports are its cost
    assert [n.name for n in top] == ["ferry.validation", "jsonschema", "boto3"]
    assert dict(cold_start.by_package(nodes)) == {"jsonschema": 310, "ferry": 40, "urllib3": 5, "boto3": 100, "app": 20}


def test_one_probe_per_template_function_with_lambda_path_and_environment():
    probes = cold_start.handler_probes()
    assert {p.name for p in probes} >= {"RouterFunction", "RenderFunction", "VerifyFunction"}
    for probe in probes:
        code_dir, layer = map(Path, probe.front)
        assert (code_dir / f"{probe.root_module.replace('.', '/')}.py").is_file()
        assert (layer / "ferry" / "__init__.py").is_file()
        for name in (
            "FERRY_ENVIRONMENT",
            "CONFIG_BUCKET",
            "LOCK_TABLE",
            "POWERTOOLS_SERVICE_NAME",
            "AWS_DEFAULT_REGION",
            "AWS_ACCESS_KEY_ID",
        ):
            assert probe.env[name]
        # what SAM ships as source, compiled at every cold start: the function's folder
        assert "app" in probe.shipped
        # the layer, its own SDK included (not the runtime's), is built by layers/ferry/Makefile with bytecode
        assert probe.built_layers == [str(layer)]
        assert {"ferry", "jsonschema", "yaml", "boto3", "botocore"} <= set(probe.layer_modules)
        assert not set(probe.layer_modules) & set(probe.shipped)
    router = next(p for p in probes if p.name == "RouterFunction")
    assert router.env["STATE_MACHINE_ARN"].startswith("arn:aws:states:")


def test_a_handler_imports_in_a_fresh_process(tmp_path):
    probe = next(p for p in cold_start.handler_probes(only=["update_service"]))
    report, _ = cold_start.run_probe(probe, tmp_path)
    assert report["seconds"] > 0
    assert "ferry" in report["packages"]


def test_lambda_mode_imports_the_built_layer_from_its_bytecode_and_writes_nothing(tmp_path):
    probe = next(p for p in cold_start.handler_probes(only=["update_service"]))
    probe.bytecode = "lambda"
    built = cold_start.build_layers([probe], tmp_path / "layers")
    (python,) = map(Path, built.values())
    assert probe.path_front() == [probe.front[0], str(python)]
    # laid out as sam build leaves the layer: the pinned SDK, the ferry package with its schemas, unchecked-hash .pyc
    assert (python / "boto3-1.44.18.dist-info").is_dir() and (python / "botocore-1.44.18.dist-info").is_dir()
    assert list((python / "ferry" / "schemas").glob("*.json"))
    for package in ("boto3", "botocore", "ferry"):
        pyc = (python / package / "__pycache__" / "__init__.cpython-312.pyc").read_bytes()
        assert int.from_bytes(pyc[4:8], "little") == 0b01  # hash-based, source not checked
    before = cold_start.files_under([str(python)])

    report, _ = cold_start.run_probe(probe, tmp_path / "unused-pycache")
    assert report["dontWriteBytecode"] and report["pycachePrefix"] is None
    # only the function's own code compiles (SAM ships it as source); the layer's modules come from its .pyc
    assert report["compiled"] == ["app"]
    for package in ("ferry", "boto3", "botocore"):
        assert Path(report["origins"][package]).is_relative_to(python)
    assert cold_start.files_under([str(python)]) == before
    assert not (tmp_path / "unused-pycache").exists()
