/**
 * One WebSocket with a heartbeat: a `{"type":"ping"}` every 15 s and, when
 * nothing at all has arrived for 35 s although a ping has had 20 s to be
 * answered, the connection is declared stale and dropped at once (waiting
 * for a close handshake on a dead network would take minutes). Needing an
 * unanswered ping keeps a hidden tab, whose timers the browser may run only
 * once a minute, from calling a quiet but healthy stream stale. Messages
 * are parsed JSON; anything else is ignored. Reconnection is the owner's
 * business (socket.js, transcript-stream.js).
 */

import { observeServerTime } from './clock.js';

export const PING_INTERVAL_MS = 15000;
export const STALE_AFTER_MS = 35000;
/** How long a ping may go unanswered. */
const PING_GRACE_MS = 20000;
/** How often silence is checked: a timer per message would cost more at 1,000 messages a second. */
const STALE_CHECK_MS = 1000;

/** The ws: or wss: origin of this page. */
export function socketOrigin() {
  return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}`;
}

/**
 * The subprotocol that carries an access token (PROTOCOL section 1): browsers
 * cannot set headers on a WebSocket, and a token in the URL would be logged.
 * @param {string} token
 */
export function tokenProtocol(token) {
  return `burki-token-${token}`;
}

/**
 * @typedef {object} SocketHandlers
 * @property {() => void} [onOpen]
 * @property {(message: any) => void} onMessage
 * @property {(info: {code: number, reason: string, stale: boolean}) => void} onClose
 */

export class HeartbeatSocket {
  /**
   * @param {string} url
   * @param {string[]} protocols
   * @param {SocketHandlers} handlers
   */
  constructor(url, protocols, handlers) {
    this.handlers = handlers;
    this.closed = false;
    this.pingTimer = 0;
    this.lastHeard = performance.now();
    /** When the first ping sent since anything was heard went out (0: none). */
    this.unansweredSince = 0;
    this.staleTimer = window.setInterval(() => this.checkStale(), STALE_CHECK_MS);
    this.ws = new WebSocket(url, protocols);
    this.ws.addEventListener('open', () => {
      if (this.closed) return;
      this.pingTimer = window.setInterval(() => this.ping(), PING_INTERVAL_MS);
      this.handlers.onOpen?.();
    });
    this.ws.addEventListener('message', (event) => this.receive(event.data));
    this.ws.addEventListener('close', (event) => this.finish(event.code, event.reason, false));
    // 'error' is always followed by 'close', which carries what there is to know.
  }

  /** @param {unknown} data */
  receive(data) {
    if (this.closed) return;
    this.lastHeard = performance.now();
    this.unansweredSince = 0;
    if (typeof data !== 'string') return;
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      return;
    }
    if (message === null || typeof message !== 'object') return;
    if (message.type === 'pong' || message.type === 'connection_established') {
      observeServerTime(message.timestamp);
    }
    this.handlers.onMessage(message);
  }

  ping() {
    this.send({ type: 'ping' });
    if (!this.unansweredSince) this.unansweredSince = performance.now();
  }

  checkStale() {
    const now = performance.now();
    if (now - this.lastHeard < STALE_AFTER_MS) return;
    // An open socket is stale once a ping has gone unanswered; one still opening, at once.
    const opening = this.ws.readyState === WebSocket.CONNECTING;
    if (!opening && !(this.unansweredSince && now - this.unansweredSince >= PING_GRACE_MS)) return;
    this.finish(4000, 'stale', true);
    try {
      this.ws.close(4000, 'stale');
    } catch {
      // Closing a socket that never opened can throw; it is dropped all the same.
    }
  }

  /** @param {object} message */
  send(message) {
    if (!this.closed && this.ws.readyState === WebSocket.OPEN) this.ws.send(JSON.stringify(message));
  }

  /**
   * Close on purpose; the owner gets no onClose for it.
   * @param {number} [code]
   */
  close(code = 1000) {
    this.stopTimers();
    this.closed = true;
    try {
      this.ws.close(code);
    } catch {
      // Already closing.
    }
  }

  /**
   * @param {number} code
   * @param {string} reason
   * @param {boolean} stale
   */
  finish(code, reason, stale) {
    if (this.closed) return;
    this.closed = true;
    this.stopTimers();
    this.handlers.onClose({ code, reason, stale });
  }

  stopTimers() {
    window.clearInterval(this.pingTimer);
    window.clearInterval(this.staleTimer);
  }
}
