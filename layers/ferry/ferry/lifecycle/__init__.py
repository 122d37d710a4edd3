"""What happens around a deploy once it started or ended: the execution-ended and task-stopped
functions, announcements (notify), metrics and the summary an execution ends with."""
