"""The state machine's steps: one module per Lambda function the workflow invokes, named as its
functions/<step>/ folder; a step's module never imports another step's."""
