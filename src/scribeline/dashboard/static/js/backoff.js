/**
 * Reconnection delays: 0.5 s doubling to 15 s, with jitter (dashboard spec,
 * section 3), so that a restarted server is not met by every tab at once.
 */

const FIRST_MS = 500;
const MAX_MS = 15000;

export class Backoff {
  constructor(firstMs = FIRST_MS, maxMs = MAX_MS) {
    this.firstMs = firstMs;
    this.maxMs = maxMs;
    this.attempt = 0;
  }

  /** The delay before the next attempt: the nominal delay, minus up to half of it at random. */
  next() {
    const nominal = Math.min(this.maxMs, this.firstMs * 2 ** this.attempt);
    this.attempt += 1;
    return Math.round(nominal / 2 + Math.random() * (nominal / 2));
  }

  /** Call once a connection has proved itself (it is live). */
  reset() {
    this.attempt = 0;
  }
}
