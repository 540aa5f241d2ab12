/**
 * The live calls of the organization: state only, no DOM.
 *
 * Every call stream event carries the call's `seq`, which grows by one per
 * stored event (PROTOCOL section 1). A call remembers the highest seq it has
 * applied, so an event at or below it (a duplicate, or one the snapshot
 * already covers) changes nothing, and a snapshot older than what the
 * events have shown does not take the row back in time.
 */

import { parseTime } from './clock.js';
import { isLatePartial, lineOf } from './lines.js';
import { isTerminal } from './vocab.js';

const MAX_TOMBSTONES = 5000;

/**
 * @typedef {import('./lines.js').Line} Line
 *
 * @typedef {object} CallState
 * @property {string} sid
 * @property {string} status
 * @property {string} direction `inbound`, `outbound`, `web` or ''
 * @property {string} customer the customer's number
 * @property {string} line our number (`to_phone_number`)
 * @property {number|null} startedAt epoch ms
 * @property {number} seq the highest seq applied
 * @property {Line|null} latest the newest transcript line, final or partial
 * @property {number} alerts how many alerts the call has had
 * @property {string} lastAlert the newest alert's rule name
 * @property {boolean} ended
 * @property {boolean} incomplete created from a transcript alone: metadata unknown
 * @property {number} touched the store's event counter when an event last changed it
 */

export class CallsStore {
  constructor() {
    /** @type {Map<string, CallState>} */
    this.calls = new Map();
    /** Calls that have ended (and left the store), with their last seq: nothing at or below it revives them. */
    /** @type {Map<string, number>} */
    this.tombstones = new Map();
    /** Counts applied events; snapshots use it to tell what changed while they were in flight. */
    this.clock = 0;
  }

  /**
   * Apply one `transcript`, `call_status` or `alert` event of the org stream.
   * @param {any} event
   * @returns {CallState|null} the call if it changed, null for a duplicate
   */
  apply(event) {
    const sid = event.call_sid;
    if (typeof sid !== 'string') return null;
    const seq = typeof event.seq === 'number' ? event.seq : 0;
    const tomb = this.tombstones.get(sid);
    if (tomb !== undefined && seq <= tomb) return null;
    let call = this.calls.get(sid);
    if (call && seq <= call.seq) return null;
    if (!call) {
      call = blankCall(sid);
      this.calls.set(sid, call);
    }
    call.seq = seq;
    call.touched = ++this.clock;
    if (event.type === 'transcript') {
      const line = lineOf(event.data ?? {}, seq);
      // The late partial of the final shown (lines.js) would show words in progress that are final.
      if (!isLatePartial(line, call.latest)) call.latest = line;
      if (!call.status) call.status = 'in-progress';
    } else if (event.type === 'call_status') {
      call.status = String(event.status ?? call.status);
      fillMetadata(call, event.metadata ?? {});
      call.incomplete = false;
      if (isTerminal(call.status)) this.end(call);
    } else if (event.type === 'alert') {
      applyAlert(call, event.data ?? {});
      if (!call.status) call.status = 'in-progress';
    }
    return call;
  }

  /**
   * Merge a REST snapshot of the live calls (`GET /v1/calls?include=latest`).
   * @param {any[]} list the calls, all pages
   * @param {number} mark `clock` when the request was sent
   * @param {boolean} [complete] false when `list` stopped at the page cap with
   *   more calls left: a call it does not list may just be past the cap, so none
   *   is taken for gone
   * @returns {{changed: CallState[], gone: string[]}} `gone`: calls the
   *   snapshot no longer lists and no event has touched since `mark` (they
   *   ended while the stream was down); they are removed from the store
   */
  applySnapshot(list, mark, complete = true) {
    /** @type {Set<string>} */
    const seen = new Set();
    /** @type {CallState[]} */
    const changed = [];
    for (const item of list) {
      const sid = item?.call_sid;
      if (typeof sid !== 'string' || isTerminal(item.status)) continue;
      const lastSeq = typeof item.last_seq === 'number' ? item.last_seq : 0;
      seen.add(sid);
      const tomb = this.tombstones.get(sid);
      if (tomb !== undefined && lastSeq <= tomb) continue;
      let call = this.calls.get(sid);
      if (!call) {
        call = blankCall(sid);
        this.calls.set(sid, call);
      }
      fillMetadata(call, item);
      call.incomplete = false;
      if (lastSeq > call.seq || !call.status) {
        call.status = String(item.status);
        if (item.latest) call.latest = lineOf(item.latest, Number(item.latest.seq) || lastSeq);
        if (item.alerts?.last) applyAlert(call, item.alerts.last);
        call.seq = Math.max(call.seq, lastSeq);
      }
      changed.push(call);
    }
    /** @type {string[]} */
    const gone = [];
    for (const call of complete ? this.calls.values() : []) {
      if (!seen.has(call.sid) && !call.ended && call.touched <= mark) gone.push(call.sid);
    }
    for (const sid of gone) this.remove(sid);
    return { changed, gone };
  }

  /** @param {CallState} call */
  end(call) {
    call.ended = true;
    this.tombstones.delete(call.sid);
    this.tombstones.set(call.sid, call.seq);
    if (this.tombstones.size > MAX_TOMBSTONES) {
      const oldest = this.tombstones.keys().next().value;
      if (oldest !== undefined) this.tombstones.delete(oldest);
    }
  }

  /** @param {string} sid */
  remove(sid) {
    this.calls.delete(sid);
  }
}

/** @param {string} sid @returns {CallState} */
function blankCall(sid) {
  return {
    sid,
    status: '',
    direction: '',
    customer: '',
    line: '',
    startedAt: null,
    seq: 0,
    latest: null,
    alerts: 0,
    lastAlert: '',
    ended: false,
    incomplete: true,
    touched: 0,
  };
}

/**
 * An alert's data (an `alert` event's, or a snapshot's newest): its `number` is
 * the call's count of alerts so far, so applying one twice changes nothing.
 * @param {CallState} call
 * @param {any} data
 */
function applyAlert(call, data) {
  const number = typeof data.number === 'number' ? data.number : call.alerts + 1;
  if (number < call.alerts) return;
  call.alerts = number;
  call.lastAlert = typeof data.rule?.name === 'string' ? data.rule.name : '';
}

/**
 * Copy the call's own fields from a status event's metadata or a REST call.
 * @param {CallState} call
 * @param {any} source
 */
function fillMetadata(call, source) {
  if (typeof source.call_type === 'string') call.direction = source.call_type;
  if (typeof source.customer_phone_number === 'string') call.customer = source.customer_phone_number;
  if (typeof source.to_phone_number === 'string') call.line = source.to_phone_number;
  const started = parseTime(source.started_at);
  if (started !== null) call.startedAt = started;
}
