/**
 * Longest workflow id the Workflow API accepts. Shared with the host→edge push schema: a run
 * started under a long id must have its events accepted too, or they would be refused and lost.
 */
export const MAX_WORKFLOW_ID_LENGTH = 256;
