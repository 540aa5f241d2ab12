/**
 * How the views run their REST reads: one at a time, and again with backoff
 * while they fail.
 */

import { Backoff } from './backoff.js';

/**
 * `fn` run one at a time: a call while it runs makes it run once more after
 * (a reconnect during a snapshot still gets a snapshot after it).
 * @param {() => Promise<void>} fn
 * @returns {() => Promise<void>}
 */
export function coalesced(fn) {
  let running = false;
  let again = false;
  return async function run() {
    if (running) {
      again = true;
      return;
    }
    running = true;
    try {
      await fn();
    } finally {
      running = false;
      if (again) {
        again = false;
        void run();
      }
    }
  };
}

/**
 * Errors that another attempt could clear: no answer, a timeout, too many
 * requests, a server error. A refusal (400, 403, 404, ...) stays a refusal.
 * @param {unknown} error
 */
export function transient(error) {
  const status = /** @type {{status?: unknown}} */ (error)?.status;
  if (typeof status !== 'number') return true;
  return status === 0 || status === 408 || status === 429 || status >= 500;
}

/**
 * @typedef {object} Retried
 * @property {() => Promise<void>} run start now (a retry waiting is dropped);
 *   coalesced, so a run asked for meanwhile starts once this one is over
 * @property {() => void} dispose no more runs, no retry (the view unmounts)
 */

/**
 * A snapshot read that is tried again, 0.5 s doubling to 15 s with jitter
 * (backoff.js), for as long as it fails with a transient error and the owner
 * has not disposed of it. `load` throws to fail; `onError` gets every
 * failure and whether it will be tried again (show a notice), `onSuccess`
 * every success (clear it).
 * @param {() => Promise<void>} load
 * @param {{onError?: (error: any, retrying: boolean) => void, onSuccess?: () => void, backoff?: Backoff}} [options]
 * @returns {Retried}
 */
export function retried(load, options = {}) {
  const { onError = () => {}, onSuccess = () => {}, backoff = new Backoff() } = options;
  let timer = 0;
  let disposed = false;
  const run = coalesced(async () => {
    // A run started by hand, or coalesced after one that failed, replaces the retry that failure set.
    window.clearTimeout(timer);
    timer = 0;
    if (disposed) return;
    try {
      await load();
    } catch (error) {
      if (disposed) return;
      const retrying = transient(error);
      onError(error, retrying);
      if (retrying) timer = window.setTimeout(() => void run(), backoff.next());
      return;
    }
    if (disposed) return;
    backoff.reset();
    onSuccess();
  });
  return {
    run,
    dispose() {
      disposed = true;
      window.clearTimeout(timer);
    },
  };
}
