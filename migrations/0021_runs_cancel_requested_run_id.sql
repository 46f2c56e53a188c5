-- The Temporal run whose cancellation POST /api/v1/workflow-runs/cancel last asked for. Cancel by
-- workflowId takes at most 100 open runs a call; a run stays `running` in D1 until its cleanup
-- ends it, so without this every call took the same 100 and never reached the rest.
ALTER TABLE `runs` ADD `cancel_requested_run_id` text;
