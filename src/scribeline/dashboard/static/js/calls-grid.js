/**
 * The live calls view (`#/calls`): one row per live call, kept current by
 * the org event stream on top of a REST snapshot.
 *
 * Rendering stays light with hundreds of calls (research notes, part B2):
 * rows live in a Map and are updated in place, never rebuilt; events are
 * queued and applied in one animation frame, where a call's partials are
 * coalesced (the newest wins; finals and statuses are all applied to the
 * store, in order) and each changed row is painted once; the page's one
 * ticker (ticker.js) moves every duration once a second; and off-screen rows
 * skip layout through `content-visibility` (dashboard.css).
 */

import { retried } from './async.js';
import { CallsStore } from './calls-store.js';
import { formatDuration, serverNow } from './clock.js';
import { el, failedToLoad, say, setData, setText, show } from './dom.js';
import { FrameBatcher } from './frame.js';
import { onTick } from './ticker.js';
import { LIVE_STATUSES, speakerLabel } from './vocab.js';

const ENDED_ROW_MS = 3000;
const SNAPSHOT_PAGE = 200;
const SNAPSHOT_MAX_PAGES = 25;
const STATUS_FILTERS = [
  ['all', 'All live'],
  ['in-progress', 'In progress'],
  ['ringing', 'Ringing'],
  ['queued', 'Queued'],
];
const COLUMNS = ['Call', 'Status', 'Direction', 'Caller', 'Duration', 'Latest line', 'Alerts'];

/** Filters survive a visit to a call and back. */
const remembered = { text: '', status: 'all' };

/**
 * @typedef {object} Row
 * @property {HTMLTableRowElement} tr
 * @property {HTMLElement} status
 * @property {HTMLElement} direction
 * @property {HTMLElement} customer
 * @property {HTMLElement} via
 * @property {HTMLElement} duration
 * @property {HTMLElement} latest
 * @property {HTMLElement} speaker
 * @property {HTMLElement} text
 * @property {HTMLElement} alerts
 * @property {HTMLElement} alertCount
 * @property {HTMLElement} alertRule
 * @property {boolean} shown
 * @property {number} removeTimer
 */

/**
 * @param {HTMLElement} root
 * @param {import('./app.js').ViewContext} ctx
 * @returns {() => void} unmount
 */
export function mount(root, ctx) {
  const grid = new CallsGrid(root, ctx);
  return () => grid.destroy();
}

class CallsGrid {
  /**
   * @param {HTMLElement} root
   * @param {import('./app.js').ViewContext} ctx
   */
  constructor(root, ctx) {
    this.ctx = ctx;
    this.store = new CallsStore();
    /** @type {Map<string, Row>} */
    this.rows = new Map();
    /** Events waiting for the next frame, per call, in order. */
    /** @type {Map<string, any[]>} */
    this.queue = new Map();
    /** @type {{list: any[], mark: number, complete: boolean}|null} */
    this.pendingSnapshot = null;
    this.loaded = false;
    this.destroyed = false;
    this.batcher = new FrameBatcher(() => this.flush());

    this.build(root);
    this.snapshot = retried(() => this.loadSnapshot(), {
      onError: (error, retrying) => say(this.notice, failedToLoad('the live calls', error, retrying)),
      onSuccess: () => say(this.notice, ''),
    });
    this.offs = [
      ctx.events.on('transcription', (m) => this.enqueue(m)),
      ctx.events.on('call_status', (m) => this.enqueue(m)),
      ctx.events.on('alert', (m) => this.enqueue(m)),
      ctx.onResync(() => void this.snapshot.run()),
      onTick(() => this.tick()),
    ];
    // Not live yet: the stream's first resync loads it (loading now as well would load it twice).
    if (ctx.isLive()) void this.snapshot.run();
  }

  /** @param {HTMLElement} root */
  build(root) {
    this.search = /** @type {HTMLInputElement} */ (
      el('input', {
        attrs: {
          id: 'filter-text',
          type: 'search',
          placeholder: 'SID, number, words',
          autocomplete: 'off',
          spellcheck: 'false',
        },
      })
    );
    this.search.value = remembered.text;
    this.statusFilter = /** @type {HTMLSelectElement} */ (el('select', { attrs: { id: 'filter-status' } }));
    for (const [value, label] of STATUS_FILTERS) {
      this.statusFilter.append(el('option', { text: label, attrs: { value } }));
    }
    this.statusFilter.value = remembered.status;
    this.search.addEventListener('input', () => this.refilter());
    this.statusFilter.addEventListener('change', () => this.refilter());

    this.countText = el('span', { class: 'count', text: '0' });
    this.notice = el('p', { class: 'notice', attrs: { role: 'status', id: 'calls-notice' }, hidden: true });
    this.tbody = el('tbody', { attrs: { role: 'rowgroup' } });
    const headRow = el('tr', { attrs: { role: 'row' } });
    for (const name of COLUMNS) headRow.append(el('th', { text: name, attrs: { scope: 'col', role: 'columnheader' } }));
    this.empty = el('p', { class: 'empty', attrs: { id: 'calls-empty' }, text: 'Loading live calls…' });
    this.section = el(
      'section',
      { class: 'view calls-view', attrs: { id: 'calls', 'data-count': '0', 'aria-labelledby': 'calls-title' } },
      el(
        'div',
        { class: 'view-head' },
        el('h1', { attrs: { id: 'calls-title' } }, document.createTextNode('Live calls '), this.countText),
        el(
          'div',
          { class: 'filters', attrs: { role: 'search' } },
          el('label', { class: 'field' }, el('span', { text: 'Search' }), this.search),
          el('label', { class: 'field' }, el('span', { text: 'Status' }), this.statusFilter),
        ),
      ),
      this.notice,
      el(
        'table',
        { class: 'calls-table', attrs: { id: 'calls-table', role: 'table', 'aria-labelledby': 'calls-title' } },
        el('thead', { attrs: { role: 'rowgroup' } }, headRow),
        this.tbody,
      ),
      this.empty,
    );
    this.template = rowTemplate();
    root.append(this.section);
  }

  /**
   * Fetch every live call (all pages) and merge it in the next frame. One
   * runs at a time (a resync meanwhile runs another after it); a failure is
   * retried with backoff until it succeeds or the view unmounts (async.js).
   */
  async loadSnapshot() {
    const mark = this.store.clock;
    /** @type {any[]} */
    const list = [];
    let cursor = null;
    for (let page = 0; page < SNAPSHOT_MAX_PAGES; page += 1) {
      let path = `/v1/calls?status=${LIVE_STATUSES.join(',')}&include=latest&limit=${SNAPSHOT_PAGE}`;
      if (cursor) path += `&cursor=${encodeURIComponent(cursor)}`;
      const body = await this.ctx.api.get(path);
      if (this.destroyed) return;
      list.push(...(Array.isArray(body?.calls) ? body.calls : []));
      cursor = body?.next_cursor;
      if (!cursor) break;
    }
    // Still a cursor: more live calls than the cap, and the list is not all of them.
    this.pendingSnapshot = { list, mark, complete: !cursor };
    this.batcher.schedule();
  }

  /** @param {any} event */
  enqueue(event) {
    const sid = event.call_sid;
    if (typeof sid !== 'string') return;
    let pending = this.queue.get(sid);
    if (!pending) {
      pending = [];
      this.queue.set(sid, pending);
    }
    const last = pending[pending.length - 1];
    // A partial replaces a partial queued just before it: only the newest would show.
    if (last && isPartial(last) && isPartial(event)) pending[pending.length - 1] = event;
    else pending.push(event);
    this.batcher.schedule();
  }

  flush() {
    if (this.destroyed) return;
    /** @type {Set<string>} */
    const dirty = new Set();
    if (this.pendingSnapshot) {
      const { list, mark, complete } = this.pendingSnapshot;
      this.pendingSnapshot = null;
      const { changed, gone } = this.store.applySnapshot(list, mark, complete);
      if (!complete) {
        say(this.notice, `Showing the first ${(SNAPSHOT_PAGE * SNAPSHOT_MAX_PAGES).toLocaleString('en')} live calls.`);
      }
      for (const sid of gone) this.removeRow(sid);
      for (const call of changed) dirty.add(call.sid);
      this.loaded = true;
    }
    for (const [sid, events] of this.queue) {
      // Finals are never coalesced: every one is applied to the store, in order. The row
      // is painted once, with the frame's end state: a final that a later event of the
      // frame replaces would not have been seen anyway.
      for (const event of events) if (this.store.apply(event)) dirty.add(sid);
    }
    this.queue.clear();
    for (const sid of dirty) this.render(sid);
    this.updateCount();
  }

  /** @param {string} sid */
  render(sid) {
    const call = this.store.calls.get(sid);
    if (!call) {
      this.removeRow(sid);
      return;
    }
    let row = this.rows.get(sid);
    if (!row) {
      row = this.createRow(sid);
      this.rows.set(sid, row);
      // Rows of a snapshot keep its order (newest first); a call seen first live starts on top.
      if (this.loaded && call.touched > 0) this.tbody.prepend(row.tr);
      else this.tbody.append(row.tr);
    }
    setData(row.tr, 'status', call.status);
    setText(row.status, call.status);
    setData(row.status, 'status', call.status);
    setText(row.direction, call.direction || '–');
    setText(row.customer, call.customer || '–');
    setText(row.via, call.line ? `to ${call.line}` : '');
    setText(row.duration, call.startedAt === null ? '–' : formatDuration((serverNow() - call.startedAt) / 1000));
    const line = call.latest;
    if (line) {
      row.latest.classList.toggle('interim', !line.final);
      setData(row.latest, 'final', String(line.final));
      setText(row.speaker, speakerLabel(line.speaker));
      setData(row.speaker, 'speaker', line.speaker);
      setText(row.text, line.text);
    }
    if (call.alerts > 0) {
      setData(row.alerts, 'count', call.alerts);
      setText(row.alertCount, call.alerts);
      setText(row.alertRule, call.lastAlert);
      row.alerts.title = `${call.alerts} alert${call.alerts === 1 ? '' : 's'}, the last: ${call.lastAlert}`;
    }
    if (call.ended && !row.removeTimer) {
      row.tr.classList.add('ended');
      row.removeTimer = window.setTimeout(() => {
        this.store.remove(sid);
        this.removeRow(sid);
        this.updateCount();
      }, ENDED_ROW_MS);
    }
    this.applyFilter(row, call);
  }

  /** @param {string} sid @returns {Row} */
  createRow(sid) {
    const tr = /** @type {HTMLTableRowElement} */ (this.template.cloneNode(true));
    tr.dataset.callSid = sid;
    const link = /** @type {HTMLAnchorElement} */ (tr.querySelector('.sid a'));
    link.href = `#/calls/${encodeURIComponent(sid)}`;
    link.textContent = sid;
    const q = (/** @type {string} */ selector) => /** @type {HTMLElement} */ (tr.querySelector(selector));
    return {
      tr,
      status: q('.status .badge'),
      direction: q('.direction'),
      customer: q('.numbers .customer'),
      via: q('.numbers .via'),
      duration: q('.duration'),
      latest: q('.latest'),
      speaker: q('.latest .speaker'),
      text: q('.latest .text'),
      alerts: q('.alerts'),
      alertCount: q('.alerts .alert-count'),
      alertRule: q('.alerts .alert-rule'),
      shown: true,
      removeTimer: 0,
    };
  }

  /** @param {string} sid */
  removeRow(sid) {
    const row = this.rows.get(sid);
    if (!row) return;
    window.clearTimeout(row.removeTimer);
    row.tr.remove();
    this.rows.delete(sid);
  }

  refilter() {
    remembered.text = this.search.value;
    remembered.status = this.statusFilter.value;
    for (const [sid, row] of this.rows) {
      const call = this.store.calls.get(sid);
      if (call) this.applyFilter(row, call);
    }
    this.updateCount();
  }

  /**
   * @param {Row} row
   * @param {import('./calls-store.js').CallState} call
   */
  applyFilter(row, call) {
    const status = this.statusFilter.value;
    const needle = this.search.value.trim().toLowerCase();
    let match = status === 'all' || call.status === status;
    if (match && needle) {
      const haystack = `${call.sid}\n${call.customer}\n${call.line}\n${call.latest?.text ?? ''}`.toLowerCase();
      match = haystack.includes(needle);
    }
    row.shown = match;
    show(row.tr, match);
  }

  updateCount() {
    let count = 0;
    for (const row of this.rows.values()) if (row.shown) count += 1;
    setData(this.section, 'count', count);
    setText(this.countText, count);
    show(this.empty, count === 0);
    if (count === 0) {
      const filtered = this.rows.size > 0 || this.search.value.trim() !== '' || this.statusFilter.value !== 'all';
      let message = 'No live calls right now. Calls show up here as soon as they start.';
      if (!this.loaded) message = 'Loading live calls…';
      else if (filtered) message = 'No live calls match the filters.';
      setText(this.empty, message);
    }
  }

  /** Every duration, once a second, from the server's clock. */
  tick() {
    const now = serverNow();
    for (const [sid, row] of this.rows) {
      const call = this.store.calls.get(sid);
      if (call && !call.ended && call.startedAt !== null && row.shown) {
        setText(row.duration, formatDuration((now - call.startedAt) / 1000));
      }
    }
  }

  destroy() {
    this.destroyed = true;
    this.snapshot.dispose();
    this.batcher.dispose();
    for (const off of this.offs) off();
    for (const row of this.rows.values()) window.clearTimeout(row.removeTimer);
    this.section.remove();
  }
}

/** @param {any} event */
function isPartial(event) {
  return event.type === 'transcript' && event.data?.is_final === false;
}

/** The row every call's row is cloned from. */
function rowTemplate() {
  const cell = (/** @type {string} */ cls, /** @type {string} */ label, /** @type {Node[]} */ ...children) =>
    el('td', { class: cls, attrs: { role: 'cell', 'data-label': label } }, ...children);
  return el(
    'tr',
    { class: 'call-row', attrs: { role: 'row' } },
    cell('sid', 'Call', el('a', { class: 'call-link' })),
    cell('status', 'Status', el('span', { class: 'badge' })),
    cell('direction', 'Direction'),
    cell('numbers', 'Caller', el('span', { class: 'customer' }), el('span', { class: 'via' })),
    cell('duration', 'Duration'),
    cell('latest', 'Latest', el('span', { class: 'speaker' }), el('span', { class: 'text' })),
    cell('alerts', 'Alerts', el('span', { class: 'alert-count' }), el('span', { class: 'alert-rule' })),
  );
}
