/**
 * The page's one 1-second timer, for every duration shown. It runs only
 * while something listens, and skips hidden tabs (nobody sees the seconds;
 * the next visible tick catches up, since durations are computed, not counted).
 */

const TICK_MS = 1000;

/** @type {Set<() => void>} */
const listeners = new Set();
let timer = 0;

function tick() {
  if (document.visibilityState === 'hidden') return;
  for (const fn of [...listeners]) {
    try {
      fn();
    } catch (error) {
      console.error(error);
    }
  }
}

/**
 * Call `fn` once a second while the tab is visible.
 * @param {() => void} fn
 * @returns {() => void} off
 */
export function onTick(fn) {
  listeners.add(fn);
  if (!timer) timer = window.setInterval(tick, TICK_MS);
  return () => {
    listeners.delete(fn);
    if (listeners.size === 0 && timer) {
      window.clearInterval(timer);
      timer = 0;
    }
  };
}
