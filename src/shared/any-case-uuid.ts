import { z } from "zod";

/**
 * A UUID in any letter case, read as its lower-case form. Temporal's run ids and our row ids are
 * stored lower case and compared exactly (D1, the run's log), so an upper-case id must name the
 * same run rather than none. Used by every route that takes a run or workflow UUID.
 */
export const anyCaseUuid = z.uuid().transform((id) => id.toLowerCase());
