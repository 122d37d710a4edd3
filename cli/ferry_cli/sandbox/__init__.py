"""The local sandbox: the real state machine on moto, with a simulated ECS.

Modules: sandbox (the Sandbox: set-up, the stack, handlers, event delivery, executions), world (world files),
run (`ferry sandbox run`), clock (simulated time and every wait on it), faults (what goes wrong on AWS),
delivery (how events reach their targets), moto_sfn (the patches of moto's Step Functions, Lambda and
CloudWatch), ecs_model (the simulated ECS), moto_ecs (the ECS model on moto's ECS, ELB and EC2), aws_rules
(AWS's request rules), template (template.yaml as CloudFormation reads it).
"""


class SandboxError(Exception):
    """The sandbox could not be set up or run as asked."""
