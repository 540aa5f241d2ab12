/**
 * Elements kept in the order of a number (a seq, a contact id) however they
 * arrive: a sorted array of the keys beside the container's children.
 */

/**
 * Where `key` goes in the ascending array `keys` (before any equal key).
 * @param {number[]} keys
 * @param {number} key
 */
export function sortedIndex(keys, key) {
  let lo = 0;
  let hi = keys.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (keys[mid] < key) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Insert `node` into `parent` at the place of `key`: `keys[i]` is the key of
 * the i-th of the nodes kept this way, which come first in `parent` (anything
 * else the parent holds stays after them).
 * @param {Element} parent
 * @param {number[]} keys updated
 * @param {number} key
 * @param {Element} node
 * @returns {number} the index it went to
 */
export function insertSorted(parent, keys, key, node) {
  const at = sortedIndex(keys, key);
  parent.insertBefore(node, parent.children[at] ?? null);
  keys.splice(at, 0, key);
  return at;
}
