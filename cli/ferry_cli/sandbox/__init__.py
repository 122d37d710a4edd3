"""The local sandbox: the real state machine on moto, with a simulated ECS.

Modules: sandbox (the Sandbox: set-up, the stack, handlers, event delivery, executions), world (world files),
run (`ferry sandbox run`), clock (simulated time and every wait on it), faults (what goes wrong on AWS),
delivery (how events reach their targets), moto_sfn (the patches of moto's Step Functions, Lambda and
CloudWatch), ecs_model (the simulated ECS), moto_ecs (the ECS model on moto's ECS, ELB and EC2), aws_rules
(AWS's request rules), template (template.yaml as CloudFormation reads it), scheduler (virtual time), state
(a sandbox kept between commands), importer (`ferry sandbox import`).
"""

import gc


class SandboxError(Exception):
    """The sandbox could not be set up or run as asked."""


def collect_less() -> None:
    """For a process that runs sandboxes (the ferry command's sandbox commands, the test run): a sandbox makes
    tens of thousands of short-lived objects, and with Python's default first threshold (2,000) the garbage
    collector runs thousands of times for little garbage. At 50,000 a sandbox run is about a fifth faster."""
    gc.set_threshold(50_000, 50, 1_000)
