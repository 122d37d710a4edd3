"""bench/cold_start.py: the template is read into one probe per function, -X importtime output is parsed right."""

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
        for name in ("FERRY_ENVIRONMENT", "CONFIG_BUCKET", "LOCK_TABLE", "POWERTOOLS_SERVICE_NAME",
                     "AWS_DEFAULT_REGION", "AWS_ACCESS_KEY_ID"):
            assert probe.env[name]
        assert {"app", "ferry", "jsonschema", "yaml"} <= set(probe.shipped)  # what SAM ships as source
        assert {"boto3", "botocore"} <= set(probe.shipped)  # the layer's own SDK, not the runtime's
    router = next(p for p in probes if p.name == "RouterFunction")
    assert router.env["STATE_MACHINE_ARN"].startswith("arn:aws:states:")


def test_a_handler_imports_in_a_fresh_process(tmp_path):
    probe = next(p for p in cold_start.handler_probes(only=["update_service"]))
    report, _ = cold_start.run_probe(probe, tmp_path)
    assert report["seconds"] > 0
    assert "ferry" in report["packages"]
