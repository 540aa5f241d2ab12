/**
 * The tab's one WebSocket: the organization event stream (`/v1/events`,
 * PROTOCOL section 3), subscribed to every topic the dashboard shows.
 *
 * The stream is live only, so after every (re)connect, once the server has
 * acknowledged every subscription, the resync handlers run: each view then
 * fetches its REST snapshot, and events that arrived meanwhile are merged on
 * top by seq. Reconnects back off from 0.5 s to 15 s with jitter.
 */

import { Backoff } from './backoff.js';
import { HeartbeatSocket, socketOrigin, tokenProtocol } from './ws.js';

export const TOPICS = /** @type {const} */ (['transcription', 'call_status', 'alert', 'campaign', 'meeting']);

/**
 * @typedef {'connecting'|'live'|'reconnecting'|'stale'|'signed-out'} ConnectionState
 * @typedef {typeof TOPICS[number]} Topic
 */

/**
 * The topic an event of the stream belongs to, or null for control messages.
 * @param {any} message
 * @returns {Topic|null}
 */
export function topicOf(message) {
  if (message.bot_id !== undefined) return 'meeting';
  if (message.campaign_id !== undefined) return 'campaign';
  if (message.type === 'transcript') return 'transcription';
  if (message.type === 'call_status') return 'call_status';
  if (message.type === 'alert') return 'alert';
  return null;
}

export class OrgSocket {
  /** @param {import('./session.js').Session} session */
  constructor(session) {
    this.session = session;
    /** @type {ConnectionState} */
    this.state = 'connecting';
    this.stopped = true;
    /** @type {HeartbeatSocket|null} */
    this.socket = null;
    this.backoff = new Backoff();
    this.retryTimer = 0;
    this.authFailed = false;
    /** @type {Set<string>} */
    this.awaiting = new Set();
    /** @type {Map<Topic, Set<(message: any) => void>>} */
    this.handlers = new Map(TOPICS.map((topic) => [topic, new Set()]));
    /** @type {Set<() => void>} */
    this.resyncHandlers = new Set();
    /** @type {Set<(state: ConnectionState) => void>} */
    this.stateHandlers = new Set();
    this.onOnline = () => this.retryNow();
  }

  /**
   * @param {Topic} topic
   * @param {(message: any) => void} handler
   * @returns {() => void} off
   */
  on(topic, handler) {
    const set = this.handlers.get(topic);
    if (!set) throw new Error(`unknown topic ${topic}`);
    set.add(handler);
    return () => set.delete(handler);
  }

  /**
   * @param {() => void} fn run after every (re)connect, once subscribed
   * @returns {() => void} off
   */
  onResync(fn) {
    this.resyncHandlers.add(fn);
    return () => this.resyncHandlers.delete(fn);
  }

  /**
   * @param {(state: ConnectionState) => void} fn
   * @returns {() => void} off
   */
  onState(fn) {
    this.stateHandlers.add(fn);
    fn(this.state);
    return () => this.stateHandlers.delete(fn);
  }

  get live() {
    return this.state === 'live';
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    window.addEventListener('online', this.onOnline);
    this.setState('connecting');
    this.connect();
  }

  /** @param {ConnectionState} [state] the state to show afterwards */
  stop(state = 'signed-out') {
    this.stopped = true;
    window.removeEventListener('online', this.onOnline);
    window.clearTimeout(this.retryTimer);
    this.socket?.close();
    this.socket = null;
    this.setState(state);
  }

  async connect() {
    this.retryTimer = 0;
    if (this.state === 'live') this.setState('reconnecting');
    let token;
    try {
      token = this.authFailed ? await this.session.refresh() : await this.session.getToken();
    } catch {
      if (!this.stopped && this.session.state !== 'signed-out') this.retryLater(false);
      return;
    }
    if (this.stopped) return;
    this.authFailed = false;
    this.awaiting = new Set(TOPICS);
    this.socket = new HeartbeatSocket(`${socketOrigin()}/v1/events`, [tokenProtocol(token)], {
      onMessage: (message) => this.receive(message),
      onClose: (info) => {
        this.socket = null;
        if (!this.stopped) this.retryLater(info.stale);
      },
    });
  }

  /** @param {any} message */
  receive(message) {
    switch (message.type) {
      case 'connection_established':
        for (const topic of TOPICS) this.socket?.send({ action: 'subscribe', topic, filter: '*' });
        return;
      case 'subscribed':
        this.awaiting.delete(message.topic);
        if (this.awaiting.size === 0 && this.state !== 'live') this.becomeLive();
        return;
      case 'error':
        if (message.error === 'authentication_failed') this.authFailed = true;
        else console.warn('event stream:', message.error, message.message);
        return;
      case 'pong':
      case 'unsubscribed':
        return;
      default:
        this.dispatch(message);
    }
  }

  becomeLive() {
    this.backoff.reset();
    this.setState('live');
    for (const fn of [...this.resyncHandlers]) safely(fn);
  }

  /** @param {any} message */
  dispatch(message) {
    const topic = topicOf(message);
    if (topic === null) return;
    for (const handler of [...(this.handlers.get(topic) ?? [])]) safely(() => handler(message));
  }

  /** @param {boolean} stale */
  retryLater(stale) {
    if (stale) this.setState('stale');
    else if (this.state !== 'connecting' || this.backoff.attempt > 0) this.setState('reconnecting');
    window.clearTimeout(this.retryTimer);
    this.retryTimer = window.setTimeout(() => this.connect(), this.backoff.next());
  }

  retryNow() {
    if (this.stopped || !this.retryTimer) return;
    window.clearTimeout(this.retryTimer);
    this.connect();
  }

  /** @param {ConnectionState} state */
  setState(state) {
    if (this.state === state) return;
    this.state = state;
    for (const fn of [...this.stateHandlers]) safely(() => fn(state));
  }
}

/** @param {() => void} fn */
function safely(fn) {
  try {
    fn();
  } catch (error) {
    console.error(error);
  }
}
