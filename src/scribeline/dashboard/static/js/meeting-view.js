/**
 * One meeting bot (`#/meetings/<id>`): its status, participants, live
 * transcript and chat.
 *
 * Every line is placed by its seq (sorted.js), so the stored history (GET
 * /v1/bots/{id}/events) and live events can interleave in any order and none
 * is shown twice. Live events of a bot come in seq order: one past a gap
 * means some were missed, and the history after the last contiguous seq is
 * read again. The DOM follows in one animation frame (FrameBatcher).
 */

import { retried } from './async.js';
import { serverNow } from './clock.js';
import { el, failedToLoad, say, setData, setText, show } from './dom.js';
import { FrameBatcher } from './frame.js';
import {
  applyState,
  botPath,
  durationOf,
  ended,
  mergeJson,
  newBot,
  readHistory,
  renderHeader,
  renderParticipants,
} from './meetings-state.js';
import { insertSorted } from './sorted.js';
import { onTick } from './ticker.js';

/** How long a seq gap may last before the page fetches what it missed. */
const GAP_WAIT_MS = 1000;

/**
 * @param {HTMLElement} root
 * @param {import('./app.js').ViewContext} ctx
 * @param {{botId: string}} params
 * @returns {() => void} unmount
 */
export function mount(root, ctx, params) {
  const botId = params.botId;
  const bot = newBot(botId);
  const view = el('section', {
    class: 'view',
    attrs: { id: 'meeting-view', 'data-bot-id': botId, 'aria-labelledby': 'meeting-title' },
  });
  const name = el('h1', { class: 'bot-name', attrs: { id: 'meeting-title' }, text: 'Meeting' });
  const status = el('span', { class: 'bot-status badge' });
  const url = el('dd', { class: 'meeting-url' });
  const duration = el('dd', { class: 'duration' });
  const endedNote = el('p', { attrs: { id: 'meeting-ended', role: 'status' }, hidden: true });
  const error = el('p', { class: 'view-error', attrs: { role: 'alert' }, hidden: true });
  const participants = el('ul', { class: 'participants', attrs: { 'aria-label': 'Participants' } });
  // Lines are only ever added (no partials here): a live region of additions.
  const transcript = el('ol', {
    attrs: { id: 'meeting-transcript', 'aria-live': 'polite', 'aria-relevant': 'additions', 'aria-label': 'Transcript' },
  });
  const noLines = el('p', {
    class: 'note',
    attrs: { id: 'meeting-transcript-empty' },
    text: 'Nobody has spoken yet.',
    hidden: true,
  });
  const chat = el('ol', { attrs: { id: 'meeting-chat' } });
  const sectionTitle = (/** @type {string} */ text) => el('h2', { class: 'section-title', text });
  const chatBox = el('div', { class: 'chat', hidden: true }, sectionTitle('Chat'), chat);
  const actions = el('div', { class: 'actions' });
  /** @type {HTMLButtonElement|null} */
  let stopButton = null;
  if (!ctx.session?.readOnly) {
    stopButton = /** @type {HTMLButtonElement} */ (
      el('button', {
        class: 'button danger',
        attrs: { id: 'stop-bot', type: 'button' },
        text: 'Stop bot',
        hidden: true,
      })
    );
    stopButton.addEventListener('click', () => void stop());
    actions.append(stopButton);
  }
  view.append(
    // '#/meetings/' is the list too (router.js): the nav's a[href="#/meetings"] stays the only one.
    el('p', { class: 'crumbs' }, el('a', { attrs: { href: '#/meetings/' }, text: '← Meetings' })),
    el('div', { class: 'view-head' }, el('div', { class: 'title' }, name, status), actions),
    el(
      'dl',
      { class: 'bot-meta' },
      el('div', {}, el('dt', { text: 'Meeting' }), url),
      el('div', {}, el('dt', { text: 'Duration' }), duration),
    ),
    endedNote,
    error,
    el(
      'div',
      { class: 'meeting-body' },
      el('aside', {}, sectionTitle('Participants'), participants),
      el('div', { class: 'transcript-box' }, sectionTitle('Transcript'), noLines, transcript, chatBox),
    ),
  );
  root.append(view);

  const ui = { card: view, name, status, url, duration };
  let alive = true;
  let known = false; // the bot's REST view has arrived
  let historyRead = false; // its history has been read once
  let stopping = false;
  const applied = new Set(); // seqs of events shown
  /** @type {number[]} */
  const lines = []; // seqs of the transcript's lines, ascending
  /** @type {number[]} */
  const chatLines = [];
  const speakerNames = new Map(); // speaker index → a name a later line gave
  const unnamed = new Map(); // speaker index → its lines' .speaker spans without a name
  /** @type {Array<[HTMLElement, number[], number, HTMLElement]>} */
  const pending = []; // [list, seqs, seq, li] inserted at the next frame
  let watermark = 0; // every seq up to it has been applied
  let maxApplied = 0;
  let fetching = false;
  let gapTimer = 0;
  const frames = new FrameBatcher(flush);

  /** @param {any} data */
  function speakerOf(data) {
    if (data.speaker_name) return data.speaker_name;
    if (!Number.isInteger(data.speaker)) return 'Unknown speaker';
    return speakerNames.get(data.speaker) ?? `Speaker ${data.speaker + 1}`;
  }

  /**
   * @param {number} seq
   * @param {string} who
   * @param {string} text
   * @param {string} kind
   */
  function line(seq, who, text, kind) {
    const speaker = el('span', { class: 'speaker', text: who });
    const said = el('span', { class: 'text', text });
    const li = el('li', { class: kind, attrs: { 'data-seq': String(seq) } }, speaker, said);
    return [li, speaker];
  }

  /** @param {any} event */
  function apply(event) {
    const seq = event.seq;
    if (!Number.isInteger(seq) || applied.has(seq)) return;
    applied.add(seq);
    maxApplied = Math.max(maxApplied, seq);
    while (applied.has(watermark + 1)) watermark += 1;
    const data = event.data ?? {};
    if (event.type === 'ts') {
      const [li, speaker] = line(seq, speakerOf(data), data.transcript ?? '', 'line');
      if (Number.isInteger(data.speaker)) {
        if (data.speaker_name && speakerNames.get(data.speaker) !== data.speaker_name) {
          speakerNames.set(data.speaker, data.speaker_name);
          for (const span of unnamed.get(data.speaker) ?? []) span.textContent = data.speaker_name;
          unnamed.delete(data.speaker);
        } else if (!data.speaker_name && !speakerNames.has(data.speaker)) {
          if (!unnamed.has(data.speaker)) unnamed.set(data.speaker, []);
          unnamed.get(data.speaker).push(speaker);
        }
      }
      pending.push([transcript, lines, seq, li]);
    } else if (event.type === 'chat-message') {
      const [li] = line(seq, data.username ?? 'Chat', data.content ?? '', 'chat-line');
      pending.push([chat, chatLines, seq, li]);
    } else {
      applyState(bot, event);
    }
    frames.schedule();
  }

  /** @param {any} event */
  function onEvent(event) {
    if (event?.bot_id !== botId) return;
    apply(event);
    checkGap();
  }

  /** Live events of a bot come in seq order: one past a gap means some were missed. */
  function checkGap() {
    if (gapTimer || fetching || !alive || maxApplied <= watermark) return;
    gapTimer = window.setTimeout(() => {
      gapTimer = 0;
      if (!fetching && maxApplied > watermark) {
        catchUp().catch((err) => {
          if (alive) say(error, failedToLoad("the meeting's events", err, false));
        });
      }
    }, GAP_WAIT_MS);
  }

  /** Read the stored events after the watermark: everything up to the head is then shown. */
  async function catchUp() {
    fetching = true;
    bot.fetchedSeq = watermark;
    try {
      await readHistory(ctx, bot, apply);
      // Every stored event up to fetchedSeq has come (seqs need not be contiguous).
      watermark = Math.max(watermark, bot.fetchedSeq);
      while (applied.has(watermark + 1)) watermark += 1;
      historyRead = true;
      frames.schedule();
    } finally {
      fetching = false;
    }
    checkGap();
  }

  /** The bot and its history: after every (re)connect, and again with backoff while it fails. */
  const snapshot = retried(
    async () => {
      mergeJson(bot, await ctx.api.get(botPath(botId)));
      if (!alive) return;
      known = true;
      frames.schedule();
      await catchUp();
    },
    {
      onError: (err, retrying) => {
        if (err.status === 404) say(error, 'No such meeting bot.');
        else say(error, failedToLoad(known ? "the meeting's events" : 'the bot', err, retrying));
      },
      onSuccess: () => say(error, ''),
    },
  );

  async function stop() {
    if (!stopButton || stopping) return;
    stopping = true;
    stopButton.disabled = true;
    setText(stopButton, 'Stopping…');
    try {
      mergeJson(bot, await ctx.api.post(`${botPath(botId)}/stop`, {}));
    } catch (err) {
      if (!alive) return;
      if (/** @type {any} */ (err).status === 409) void snapshot.run(); // it had already ended
      else say(error, `Could not stop the bot: ${/** @type {Error} */ (err).message}`);
    }
    stopping = false;
    if (!alive) return;
    stopButton.disabled = false;
    setText(stopButton, 'Stop bot');
    frames.schedule();
  }

  function flush() {
    const box = transcript;
    const atBottom = box.scrollTop + box.clientHeight >= box.scrollHeight - 40;
    for (const [list, seqs, seq, li] of pending) insertSorted(list, seqs, seq, li);
    pending.length = 0;
    if (atBottom) box.scrollTop = box.scrollHeight;
    renderHeader(ui, bot, serverNow());
    renderParticipants(participants, bot);
    show(noLines, historyRead && lines.length === 0);
    show(chatBox, chatLines.length > 0);
    const over = ended(bot);
    if (stopButton) show(stopButton, known && !over);
    const reason = bot.reason ? ` (${bot.reason.replaceAll('_', ' ')})` : '';
    const why =
      bot.status === 'failed' ? `The bot failed: ${bot.error ?? 'no reason given'}.` : `The meeting has ended${reason}.`;
    say(endedNote, over ? why : '');
    setData(view, 'ended', String(over));
  }

  const offTick = onTick(() => {
    if (bot.startedAt && !bot.endedAt) setText(duration, durationOf(bot, serverNow()));
  });
  const offEvents = ctx.events.on('meeting', onEvent);
  const offResync = ctx.onResync(() => void snapshot.run());
  // Not live yet: the stream's first resync loads it (loading now as well would load it twice).
  if (ctx.isLive()) void snapshot.run();

  return function unmount() {
    alive = false;
    snapshot.dispose();
    offTick();
    window.clearTimeout(gapTimer);
    offEvents();
    offResync();
    frames.dispose();
    view.remove();
  };
}
