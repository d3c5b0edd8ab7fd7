-- The social worker of each stint, so the timeliness report by worker counts each worker's own
-- stints. Filled for earlier stints by `swdispatch audit rebuild`.
ALTER TABLE stints ADD COLUMN worker_id text;
