/**
 * The server's clock as seen from here. Durations tick from the server's
 * `started_at`, so a browser whose clock is off by a minute would show every
 * call a minute too long or too short. Each server timestamp received gives
 * an estimate of the offset (late by the one-way latency, so the largest
 * recent estimate is the best); it only matters to the second.
 */

const WINDOW = 20;
/** @type {number[]} */
const samples = [];
let offsetMs = 0;

/**
 * Record a server timestamp that has just arrived.
 * @param {string|undefined} iso
 */
export function observeServerTime(iso) {
  if (typeof iso !== 'string') return;
  const server = Date.parse(iso);
  if (Number.isNaN(server)) return;
  samples.push(server - Date.now());
  if (samples.length > WINDOW) samples.shift();
  offsetMs = Math.max(...samples);
}

/** @returns {number} the server's current time, in epoch milliseconds */
export function serverNow() {
  return Date.now() + offsetMs;
}

/**
 * Epoch milliseconds of an ISO timestamp, or null when there is none or it is not one.
 * @param {unknown} iso
 * @returns {number|null}
 */
export function parseTime(iso) {
  const ms = typeof iso === 'string' ? Date.parse(iso) : NaN;
  return Number.isNaN(ms) ? null : ms;
}

/**
 * "4:05" or "1:02:03" for a number of seconds.
 * @param {number} seconds
 */
export function formatDuration(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, '0');
  return h > 0 ? `${h}:${String(m).padStart(2, '0')}:${rest}` : `${m}:${rest}`;
}

/**
 * A local time of day for an ISO timestamp, or '' when there is none.
 * @param {string|null|undefined} iso
 */
export function formatTime(iso) {
  if (!iso) return '';
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? '' : date.toLocaleString();
}
