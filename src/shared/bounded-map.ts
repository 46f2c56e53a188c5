/**
 * An isolate's caches are plain Maps kept small by dropping their oldest entry: a Map iterates in
 * insertion order, so the first key is the one set longest ago. One helper, so that every cache
 * refreshes and evicts the same way.
 */

/**
 * Sets `key` as the newest entry of `map` (a key set again moves to the back), first dropping the
 * oldest entries while the map holds `max` or more. Refreshing a key already there never drops
 * another: it is removed before the map's size is looked at.
 */
export function setBounded<K, V>(map: Map<K, V>, key: K, value: V, max: number): void {
  map.delete(key);
  while (map.size >= max) map.delete(map.keys().next().value as K);
  map.set(key, value);
}
