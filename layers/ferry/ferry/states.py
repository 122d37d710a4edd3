"""The names of the deploy state machine's states, one constant each.

A state's name is what the Step Functions console, the execution history, the metrics, the CLI and the tests
show and match, so it is written here once. statemachine/build.py builds statemachine/deploy.asl.json from these;
tests/statemachine/test_asl_source.py checks that every state there is a constant here and every constant a
state. Renaming one is a change to the state machine (and to what people read in the console). Nothing but
the names: Lambda handlers import this.
"""

# The request and the lock
CHECK_REQUEST = "Check the request"
REFUSE_REQUEST = "Refuse the request"
TAKE_LOCK = "Take the deploy lock for this service"
SUPERSEDED = "Superseded by a newer deploy"
IS_ROLLBACK_REQUEST = "Is this a rollback request?"
FIND_ROLLBACK_TARGET = "Find the revision to roll back to"
ROLL_BACK_TO_TARGET = "Roll back to that revision"

# Before the service changes
RENDER = "Render the new task definition and diff it"
VERIFY = "Verify secrets, images and roles"
REGISTER = "Register the new revision"
HAS_MIGRATIONS = "Are there migrations to run?"
NO_MIGRATIONS = "No migrations to run"
MIGRATE = "Run the migrations in order"
MIGRATION_TASK = "Run the migration task and wait for it to stop"  # the state inside MIGRATE's iterator
WHICH_STRATEGY = "Which strategy?"
START_CANARY = "Start the canary tasks"
WAIT_FOR_CANARY = "Wait for the canary"
CHECK_CANARY = "Check the canary"
IS_CANARY_HEALTHY = "Is the canary healthy for long enough?"
REMOVE_FAILED_CANARY = "Remove the canary after the failure"

# The change, the bake and the clean-up
UPDATE_SERVICE = "Update the service to the new revision"
WAIT_FOR_DEPLOYMENT = "Wait for ECS to finish the deployment"
HAS_BAKE = "Is there a bake?"
BAKE = "Bake while watching the alarms"
CHECK_ALARMS = "Check the alarms as the bake ends"
DID_CANARY_RUN = "Did a canary run?"
DEREGISTER_CANARY = "Take the canary out of the target groups"
DRAIN_CANARY = "Let the canary drain"
STOP_CANARY = "Stop the canary tasks"
RELEASE_LOCK = "Release the deploy lock"
DEPLOYED = "Deployed"
DEPLOYED_LOCK_NOT_RELEASED = "Deployed, but the lock was not released"

# A failure before the service changed
RELEASE_LOCK_AFTER_FAILURE = "Release the deploy lock after the failure"
DEPLOY_FAILED = "Deploy failed"

# A failure after it changed: the rollback
ROLL_BACK = "Roll back to the previous revision"
WAIT_FOR_ROLLBACK = "Wait for ECS to finish the rollback"
DEREGISTER_FAILED_REVISION = "Deregister the failed revision"
RELEASE_LOCK_AFTER_ROLLBACK = "Release the deploy lock after the rollback"
ROLLED_BACK = "Rolled back"
EXPLAIN_FAILED_ROLLBACK = "Explain the failed rollback"
IS_SERVICE_BACK = "Is the service back on its previous revision after all?"
FINISH_RECOVERED_ROLLBACK = "Finish the rollback ECS completed"
NOTE_UNFINISHED_CLEANUP = "Note that the canary is not known to be removed"
RELEASE_LOCK_AFTER_FAILED_ROLLBACK = "Release the deploy lock after the failed rollback"
IS_ROLLBACK_EXPLAINED = "Is the failed rollback explained?"
ROLLBACK_FAILED = "Rollback failed: a person must act"
ROLLBACK_FAILED_UNEXPLAINED = "Rollback failed and could not be explained: a person must act"

# A clean-up that could not finish in its hour of retries
RELEASE_LOCK_AFTER_FAILED_CLEANUP = "Release the deploy lock after the unfinished clean-up"
RELEASE_LOCK_DEPLOYED_CLEANUP_FAILED = "Release the deploy lock: deployed, but the canary is not removed"
CLEANUP_FAILED = "Clean-up did not finish: a person must act"
