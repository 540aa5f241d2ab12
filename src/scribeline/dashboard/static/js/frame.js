/**
 * One callback per animation frame, however many times it is requested.
 * Hidden tabs get no animation frames, so there the callback runs once a
 * second instead: state stays current and DOM work stays small.
 */

const HIDDEN_INTERVAL_MS = 1000;

export class FrameBatcher {
  /** @param {() => void} flush */
  constructor(flush) {
    this.flush = flush;
    this.frame = 0;
    this.timer = 0;
    // A frame requested just before the tab was hidden would wait until it is shown again.
    this.onVisibility = () => {
      if (this.frame || this.timer) {
        this.cancel();
        this.schedule();
      }
    };
    document.addEventListener('visibilitychange', this.onVisibility);
  }

  schedule() {
    if (this.frame || this.timer) return;
    if (document.visibilityState === 'hidden') {
      this.timer = window.setTimeout(() => this.run(), HIDDEN_INTERVAL_MS);
    } else {
      this.frame = window.requestAnimationFrame(() => this.run());
    }
  }

  run() {
    this.cancel();
    this.flush();
  }

  cancel() {
    if (this.frame) window.cancelAnimationFrame(this.frame);
    if (this.timer) window.clearTimeout(this.timer);
    this.frame = 0;
    this.timer = 0;
  }

  dispose() {
    this.cancel();
    document.removeEventListener('visibilitychange', this.onVisibility);
  }
}
