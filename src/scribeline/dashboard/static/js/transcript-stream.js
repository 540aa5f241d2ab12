/**
 * One call's live transcript stream (`/live-transcript/<sid>`, PROTOCOL
 * section 1), for the call view and the captions page.
 *
 * It remembers the last seq it delivered and the stream's epoch, and
 * reconnects with `since` (and `epoch`) after a drop, so nothing is missed
 * and nothing is delivered twice: events at or below the last seq are
 * dropped here. If the server replays from the start (its store was reset:
 * another epoch), `onReset` asks the owner to clear what it shows first.
 */

import { Backoff } from './backoff.js';
import { isTerminal } from './vocab.js';
import { HeartbeatSocket, socketOrigin, tokenProtocol } from './ws.js';

/** PROTOCOL section 1: 1 to 64 characters of [A-Za-z0-9_.:-]. */
const CALL_SID = /^[A-Za-z0-9_.:-]{1,64}$/;
/** Refusals that another attempt would not change. */
const FINAL_REFUSALS = new Set(['not_found', 'forbidden', 'invalid_call_sid', 'invalid_request', 'authentication_failed']);

/**
 * @typedef {'connecting'|'live'|'reconnecting'|'stale'|'ended'|'refused'} StreamState
 *
 * @typedef {object} StreamOptions
 * @property {string} callSid
 * @property {() => Promise<string>} getToken
 * @property {(() => Promise<string>)|null} refreshToken null when the token cannot be renewed
 * @property {(event: any) => void} onEvent a transcript or status event with a new seq
 * @property {(status: any) => void} onStatus the current status (a snapshot, without seq)
 * @property {(state: StreamState, error: {code: string, message: string}|null) => void} onState
 * @property {() => void} onReset forget every line shown: the history starts again
 */

/** @param {string} sid */
export function validCallSid(sid) {
  return CALL_SID.test(sid);
}

export class TranscriptStream {
  /** @param {StreamOptions} options */
  constructor(options) {
    this.options = options;
    this.lastSeq = 0;
    this.epoch = '';
    /** @type {StreamState} */
    this.state = 'connecting';
    this.stopped = true;
    this.ended = false;
    /** @type {HeartbeatSocket|null} */
    this.socket = null;
    /** @type {{code: string, message: string}|null} */
    this.error = null;
    this.refreshNext = false;
    this.refreshedSinceLive = false;
    this.backoff = new Backoff();
    this.retryTimer = 0;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    if (!validCallSid(this.options.callSid)) {
      this.setState('refused', { code: 'invalid_call_sid', message: 'This is not a valid call SID.' });
      return;
    }
    this.connect();
  }

  stop() {
    this.stopped = true;
    window.clearTimeout(this.retryTimer);
    this.socket?.close();
    this.socket = null;
  }

  async connect() {
    let token;
    try {
      token = this.refreshNext && this.options.refreshToken ? await this.options.refreshToken() : await this.options.getToken();
    } catch {
      if (!this.stopped) this.retry(false);
      return;
    }
    if (this.stopped) return;
    this.refreshNext = false;
    this.error = null;
    let url = `${socketOrigin()}/live-transcript/${encodeURIComponent(this.options.callSid)}`;
    if (this.lastSeq > 0) {
      url += `?since=${this.lastSeq}`;
      if (this.epoch) url += `&epoch=${encodeURIComponent(this.epoch)}`;
    }
    this.socket = new HeartbeatSocket(url, [tokenProtocol(token)], {
      onMessage: (message) => this.receive(message),
      onClose: (info) => {
        this.socket = null;
        if (!this.stopped) this.closed(info.code, info.reason, info.stale);
      },
    });
  }

  /** @param {any} message */
  receive(message) {
    switch (message.type) {
      case 'connection_established':
        this.established(message);
        return;
      case 'error':
        this.error = { code: String(message.error ?? 'error'), message: String(message.message ?? '') };
        return;
      case 'pong':
        return;
      case 'call_status':
        // The snapshot counts too: reconnecting to a call that ended meanwhile sends no history.
        if (isTerminal(String(message.status))) this.ended = true;
        if (typeof message.seq !== 'number') {
          this.options.onStatus(message);
          return;
        }
        break;
      case 'transcript':
        break;
      default:
        return;
    }
    if (typeof message.seq !== 'number' || message.seq <= this.lastSeq) return;
    this.lastSeq = message.seq;
    this.options.onEvent(message);
    if (message.type === 'call_status') this.options.onStatus(message);
  }

  /** @param {any} message */
  established(message) {
    const epoch = typeof message.epoch === 'string' ? message.epoch : '';
    const since = typeof message.since === 'number' ? message.since : this.lastSeq;
    if (this.epoch && epoch && epoch !== this.epoch) {
      // Another store: its seqs say nothing about what is on screen.
      this.lastSeq = 0;
      this.options.onReset();
    } else if (since < this.lastSeq) {
      this.lastSeq = since;
    }
    this.epoch = epoch;
    this.backoff.reset();
    this.refreshedSinceLive = false;
    this.setState('live', null);
  }

  /**
   * @param {number} code
   * @param {string} reason
   * @param {boolean} stale
   */
  closed(code, reason, stale) {
    if (this.ended && code === 1000) {
      this.stopped = true;
      this.setState('ended', null);
      return;
    }
    const error = this.error ?? (code === 1008 && reason ? { code: reason, message: '' } : null);
    if (error?.code === 'authentication_failed' && this.options.refreshToken && !this.refreshedSinceLive) {
      // The token ran out while the tab slept, or the server restarted with another secret.
      this.refreshNext = true;
      this.refreshedSinceLive = true;
      this.retry(false);
      return;
    }
    if (error && FINAL_REFUSALS.has(error.code)) {
      this.stopped = true;
      this.setState('refused', error);
      return;
    }
    this.retry(stale);
  }

  /** @param {boolean} stale */
  retry(stale) {
    this.setState(stale ? 'stale' : 'reconnecting', this.error);
    window.clearTimeout(this.retryTimer);
    this.retryTimer = window.setTimeout(() => this.connect(), this.backoff.next());
  }

  /**
   * @param {StreamState} state
   * @param {{code: string, message: string}|null} error
   */
  setState(state, error) {
    this.state = state;
    this.options.onState(state, error);
  }
}
