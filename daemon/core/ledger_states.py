"""The states the ledger records for a task, for an execution run and for one step of a run."""

# Task states. "executed" means the remote work is finished but the file is not yet in Done/.
PENDING = "pending_approval"
APPROVED = "approved"
EXECUTING = "executing"
EXECUTED = "executed"
DONE = "done"
FAILED = "failed"
UNKNOWN = "unknown"
REJECTED = "rejected"

# Run and step states. A deferred call was refused for now (rate limit, quota) without
# being done, so it is safe to make again later.
QUEUED, RUNNING, SUCCEEDED = "queued", "running", "succeeded"
INTENT, ABSENT, DEFERRED = "intent", "absent", "deferred"
# The call began a remote object and stopped before it was finished (an Odoo draft invoice,
# not posted). Settled, not in doubt: the next call of the target finishes that object (the
# connector finds it by its marker) and makes no other. A call was made all the same.
UNFINISHED = "unfinished"
