-- The log sequence number of the newest attribute a run's totals (cost, tokens, HTTP requests)
-- include: the RunStream reads it back only when a projection's outcome is unknown (D1 may have
-- committed it), so the same attributes are never added to the totals, and so charged, twice.
ALTER TABLE `runs` ADD `attributes_through_seq` integer DEFAULT 0 NOT NULL;
