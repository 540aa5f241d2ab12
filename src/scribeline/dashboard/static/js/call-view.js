/**
 * One call (`#/calls/<sid>`): status, metadata and the full transcript, live.
 *
 * It reads the call's own stream (`/live-transcript/<sid>`) rather than the
 * org stream: that stream replays the stored history first (so a past call
 * opens with its transcript) and resumes with `since` after a drop, so no
 * line is missed or shown twice.
 */

import { formatDuration, formatTime, parseTime, serverNow } from './clock.js';
import { el, errorPanel, setData, setText, show } from './dom.js';
import { FrameBatcher } from './frame.js';
import { onTick } from './ticker.js';
import { TranscriptList } from './transcript-list.js';
import { TranscriptStream } from './transcript-stream.js';
import { isTerminal } from './vocab.js';

/** @type {Record<string, string>} */
const STREAM_LABELS = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  stale: 'No data: reconnecting…',
  ended: 'Call over: full transcript',
  refused: 'Refused',
};
const PIN_SLACK_PX = 80;

/**
 * @param {HTMLElement} root
 * @param {import('./app.js').ViewContext} ctx
 * @param {{callSid: string}} params
 * @returns {() => void} unmount
 */
export function mount(root, ctx, params) {
  const view = new CallView(root, ctx, params.callSid);
  return () => view.destroy();
}

class CallView {
  /**
   * @param {HTMLElement} root
   * @param {import('./app.js').ViewContext} ctx
   * @param {string} sid
   */
  constructor(root, ctx, sid) {
    this.ctx = ctx;
    this.sid = sid;
    this.root = root;
    /** @type {{startedAt: number|null, endedAt: number|null}} */
    this.times = { startedAt: null, endedAt: null };
    this.ended = false;
    this.pinned = true;
    this.build();
    this.list = new TranscriptList(this.transcript);
    this.scroller = new FrameBatcher(() => this.afterFrame());
    this.onScroll = () => {
      this.pinned = window.innerHeight + window.scrollY >= document.documentElement.scrollHeight - PIN_SLACK_PX;
    };
    window.addEventListener('scroll', this.onScroll, { passive: true });
    this.offTick = onTick(() => this.tick());
    this.stream = new TranscriptStream({
      callSid: sid,
      getToken: () => ctx.tokens.get(),
      refreshToken: () => ctx.tokens.refresh(),
      onEvent: (event) => this.event(event),
      onStatus: (status) => this.status(status),
      onState: (state, error) => this.streamState(state, error),
      onReset: () => this.list.clear(),
    });
    this.stream.start();
  }

  build() {
    const sidCode = el('code', { text: this.sid });
    this.statusBadge = el('span', { class: 'badge', attrs: { id: 'call-status' } });
    this.streamBadge = el('span', { class: 'stream-state', attrs: { id: 'call-stream', 'data-state': 'connecting' } });
    setText(this.streamBadge, STREAM_LABELS.connecting);
    this.meta = el('dl', { class: 'meta', attrs: { id: 'call-meta' } });
    /** @type {Map<string, HTMLElement>} */
    this.metaValues = new Map();
    for (const [key, label] of [
      ['direction', 'Direction'],
      ['customer', 'Caller'],
      ['line', 'Number called'],
      ['started', 'Started'],
      ['ended', 'Ended'],
      ['duration', 'Duration'],
      ['assistant', 'Assistant'],
    ]) {
      const value = el('dd', { attrs: { 'data-field': key }, text: '–' });
      this.metaValues.set(key, value);
      this.meta.append(el('div', { class: 'meta-item' }, el('dt', { text: label }), value));
    }
    this.endButton = el('button', { class: 'button danger', text: 'End call', attrs: { id: 'end-call', type: 'button' } });
    show(this.endButton, !this.ctx.session.readOnly);
    this.endButton.addEventListener('click', () => this.endCall());
    this.captionsButton = el('button', {
      class: 'button',
      text: 'Captions link',
      attrs: { id: 'captions-link', type: 'button' },
    });
    this.captionsButton.addEventListener('click', () => this.makeCaptionsLink());
    this.captionsUrl = /** @type {HTMLAnchorElement} */ (
      el('a', { class: 'captions-url', attrs: { id: 'captions-url', target: '_blank', rel: 'noopener noreferrer' } })
    );
    this.copyButton = el('button', { class: 'button', text: 'Copy', attrs: { type: 'button' } });
    this.copyButton.addEventListener('click', () => this.copyCaptionsLink());
    show(this.copyButton, Boolean(navigator.clipboard));
    this.captionsBox = el(
      'div',
      { class: 'captions-box', hidden: true },
      el('span', { text: 'Captions for a viewer (read-only, this call only):' }),
      this.captionsUrl,
      this.copyButton,
    );
    this.notice = el('p', { class: 'notice', attrs: { role: 'alert' }, hidden: true });
    // A live region of additions only; partials are kept out of it (transcript-list.js).
    this.transcript = el('ol', {
      class: 'transcript',
      attrs: { id: 'transcript', 'aria-live': 'polite', 'aria-relevant': 'additions', 'aria-label': 'Transcript' },
    });
    this.empty = el('p', { class: 'empty', text: 'No transcript yet.' });
    this.body = el(
      'div',
      { class: 'call-body' },
      el(
        'div',
        { class: 'view-head' },
        el('h1', {}, document.createTextNode('Call '), sidCode),
        el('div', { class: 'head-badges' }, this.statusBadge, this.streamBadge),
      ),
      this.meta,
      el('div', { class: 'actions' }, this.endButton, this.captionsButton),
      this.captionsBox,
      this.notice,
      el('h2', { class: 'section-title', text: 'Transcript' }),
      this.transcript,
      this.empty,
    );
    this.section = el(
      'section',
      { class: 'view call-view', attrs: { id: 'call-view', 'data-call-sid': this.sid } },
      el('p', { class: 'crumbs' }, el('a', { attrs: { href: '#/' }, text: '← Live calls' })),
      this.body,
    );
    this.root.append(this.section);
  }

  /** @param {any} event */
  event(event) {
    if (event.type !== 'transcript') return;
    if (this.list.apply(event)) {
      show(this.empty, false);
      this.scroller.schedule();
    }
  }

  /** @param {any} message a call_status event or snapshot */
  status(message) {
    const status = String(message.status ?? '');
    setText(this.statusBadge, status);
    setData(this.statusBadge, 'status', status);
    const meta = message.metadata ?? {};
    const set = (/** @type {string} */ key, /** @type {unknown} */ value) => {
      const node = this.metaValues.get(key);
      if (node && value !== undefined && value !== null && value !== '') setText(node, value);
    };
    set('direction', meta.call_type);
    set('customer', meta.customer_phone_number);
    set('line', meta.to_phone_number);
    set('assistant', meta.assistant_id);
    const startedAt = parseTime(meta.started_at);
    if (startedAt !== null) {
      this.times.startedAt = startedAt;
      set('started', formatTime(meta.started_at));
    }
    const endedAt = parseTime(meta.ended_at);
    if (endedAt !== null) {
      this.times.endedAt = endedAt;
      set('ended', formatTime(meta.ended_at));
    }
    if (isTerminal(status)) {
      if (!this.ended && typeof message.seq !== 'number') this.pinned = false; // A past call opens at the top.
      this.ended = true;
      this.endButton.hidden = true;
    }
    this.tick();
  }

  /**
   * @param {import('./transcript-stream.js').StreamState} state
   * @param {{code: string, message: string}|null} error
   */
  streamState(state, error) {
    setData(this.streamBadge, 'state', state);
    setText(this.streamBadge, STREAM_LABELS[state] ?? state);
    if (state === 'refused') {
      const message =
        error?.code === 'not_found' || error?.code === 'invalid_call_sid'
          ? `There is no call ${this.sid} in ${this.ctx.session.orgName || 'this organization'}.`
          : `The transcript stream was refused (${error?.code ?? 'error'}). ${error?.message ?? ''}`;
      this.body.replaceChildren(errorPanel('Call not available', message));
    }
    if (state === 'ended' && this.list.size === 0) setText(this.empty, 'This call has no transcript.');
  }

  async endCall() {
    this.endButton.setAttribute('disabled', '');
    try {
      await this.ctx.api.post(`/v1/calls/${encodeURIComponent(this.sid)}/status`, { status: 'completed' });
      show(this.notice, false);
    } catch (error) {
      this.endButton.removeAttribute('disabled');
      this.say(`Could not end the call: ${/** @type {Error} */ (error).message}`);
    }
  }

  async makeCaptionsLink() {
    this.captionsButton.setAttribute('disabled', '');
    try {
      const url = captionsUrl((await this.ctx.captionsLink(this.sid))?.url);
      this.captionsUrl.href = url;
      setText(this.captionsUrl, url);
      setText(this.copyButton, 'Copy');
      show(this.captionsBox, true);
      show(this.notice, false);
    } catch (error) {
      this.say(`Could not make a captions link: ${/** @type {Error} */ (error).message}`);
    } finally {
      this.captionsButton.removeAttribute('disabled');
    }
  }

  async copyCaptionsLink() {
    try {
      await navigator.clipboard.writeText(this.captionsUrl.href);
      setText(this.copyButton, 'Copied');
    } catch {
      this.say('Could not copy: select the link and copy it by hand.');
    }
  }

  /** @param {string} message */
  say(message) {
    setText(this.notice, message);
    show(this.notice, true);
  }

  afterFrame() {
    if (this.pinned) window.scrollTo(0, document.documentElement.scrollHeight);
  }

  tick() {
    const { startedAt, endedAt } = this.times;
    if (startedAt === null) return;
    const end = endedAt ?? (this.ended ? null : serverNow());
    if (end === null) return;
    const node = this.metaValues.get('duration');
    if (node) setText(node, formatDuration((end - startedAt) / 1000));
  }

  destroy() {
    this.stream.stop();
    this.scroller.dispose();
    this.offTick();
    window.removeEventListener('scroll', this.onScroll);
    this.section.remove();
  }
}

/**
 * The captions URL the server made, checked before it becomes a link: an
 * http(s) URL of this page's own origin (the captions page is served here),
 * never a `javascript:` or another site's address.
 * @param {unknown} text
 * @returns {string}
 */
export function captionsUrl(text) {
  let url;
  try {
    url = new URL(String(text));
  } catch {
    throw new Error('the server sent no valid link');
  }
  if ((url.protocol !== 'http:' && url.protocol !== 'https:') || url.origin !== location.origin) {
    throw new Error('the server sent a link to another site');
  }
  return url.href;
}
