"""The error names AWS defines that the state machine may match or raise, for the tests that check its Retry and
Catch lists and docs/errors.md: Ferry's own are the classes in ferry.errors."""

# Predefined error names of the Amazon States Language and Step Functions (Step Functions developer guide,
# "Error names": concepts-error-handling.html).
STATES_ERRORS = {
    "States.ALL",
    "States.DataLimitExceeded",
    "States.ExceedToleratedFailureThreshold",
    "States.HeartbeatTimeout",
    "States.Http.Socket",
    "States.IntrinsicFailure",
    "States.ItemReaderFailed",
    "States.NoChoiceMatched",
    "States.ParameterPathFailure",
    "States.Permissions",
    "States.ResultPathMatchFailure",
    "States.ResultWriterFailed",
    "States.Runtime",
    "States.TaskFailed",
    "States.Timeout",
    "States.BranchFailed",
    "States.QueryEvaluationError",
}
# Lambda service errors a Lambda task raises as Lambda.<exception of the Invoke API>.
LAMBDA_SERVICE_ERRORS = {
    "Lambda.ServiceException",
    "Lambda.AWSLambdaException",
    "Lambda.SdkClientException",
    "Lambda.ClientExecutionTimeoutException",
    "Lambda.TooManyRequestsException",
    # a function idle for weeks that Lambda cannot invoke yet
    "Lambda.CodeArtifactUserPendingException",
    "Lambda.ResourceNotReadyException",
}
# A function that times out reaches its state as Sandbox.Timedout, or as Lambda.Unknown with a plain-text Cause.
LAMBDA_ERRORS = LAMBDA_SERVICE_ERRORS | {"Lambda.Unknown", "Sandbox.Timedout"}
