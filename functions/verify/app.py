"""Verify everything the planned revision refers to, before anything changes."""

from ferry.aws import artefacts
from ferry.runtime import settings
from ferry.steps import verify
from ferry.errors import VerifyFailed
from ferry.runtime.observability import bind, field, logger

SETTINGS = settings.load()
REPORT_ARTEFACT = "verify-report.json"


@logger.inject_lambda_context(clear_state=True)
def handler(event, context):
    execution, cluster, service = field(event, "execution"), field(event, "cluster"), field(event, "ecsService")
    bind(execution, event.get("service"), f"{cluster}/{service}")
    spec = artefacts.get_json(SETTINGS.artefacts_bucket, execution, artefacts.PLAN_ARTEFACT)
    report = verify.verify(
        spec, cluster=cluster, service=service, alarms=event.get("alarms") or (),
        target_groups=event.get("targetGroups") or (), read_secret_values=bool(event.get("readSecretValues")),
    )
    key = artefacts.put_json(SETTINGS.artefacts_bucket, execution, REPORT_ARTEFACT, report.to_document())
    state = {**report.to_state(), "artefact": key}
    logger.info("verify finished", extra={"passed": state["passed"], "failed": state["failed"]})
    if report.failed:
        raise VerifyFailed(report.cause())
    return state
