/**
 * The meetings list (`#/meetings`): the organization's bots, live from the
 * org stream's `meeting` topic on top of a REST snapshot (GET /v1/bots).
 *
 * Participants come only for bots still in their meeting: from a bounded
 * read of the bot's stored history (at most LIST_PAGES pages, a few bots at
 * a time), then from live events. A bot that has ended shows none here (its
 * page, meeting-view.js, has them): reading a long meeting's whole history
 * to list names nobody is watching change would cost more than it shows.
 * The DOM follows in one animation frame (FrameBatcher) for what changed.
 */

import { retried } from './async.js';
import { serverNow } from './clock.js';
import { el, failedToLoad, listView, say, setText, show } from './dom.js';
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
import { onTick } from './ticker.js';

/** Pages (of 500 events) of a live bot's history read for its participants, per snapshot. */
const LIST_PAGES = 10;
/** Bots listed (the API's newest first). */
const LIST_LIMIT = 50;
/** Bots whose history the list reads at the same time. */
const LIST_READERS = 4;

/**
 * @typedef {import('./meetings-state.js').Bot & {read: boolean, complete: boolean, loading: boolean}} ListedBot
 * read: its history has been read once; complete: to its end
 */

/**
 * @param {HTMLElement} root
 * @param {import('./app.js').ViewContext} ctx
 * @returns {() => void} unmount
 */
export function mount(root, ctx) {
  const { view, error, empty, list } = listView(root, {
    id: 'meetings',
    title: 'Meetings',
    emptyText: 'No meeting bots yet.',
    listClass: 'bot-list',
  });

  /** @type {Map<string, ListedBot>} */
  const bots = new Map();
  /** @type {Map<string, any>} */
  const ui = new Map();
  /** @type {Set<ListedBot>} */
  const dirty = new Set();
  /** @type {string[]} bot ids as the last snapshot listed them, until the next frame */
  let order = [];
  let alive = true;
  const frames = new FrameBatcher(flush);

  /** @param {string} id @returns {ListedBot} */
  function listed(id) {
    return { ...newBot(id), read: false, complete: false, loading: false };
  }

  /** @param {ListedBot} bot */
  function touch(bot) {
    dirty.add(bot);
    frames.schedule();
  }

  function flush() {
    const now = serverNow();
    for (const bot of dirty) {
      if (bots.get(bot.id) !== bot) continue;
      const card = ui.get(bot.id) ?? build(bot);
      renderHeader(card, bot, now);
      const over = ended(bot);
      if (over) bot.participants.clear();
      renderParticipants(card.participants, bot);
      show(card.participants, !over);
      let note = '';
      if (over) note = 'Participants: —';
      else if (bot.read && bot.participants.size === 0) note = 'No participants yet.';
      else if (bot.read && !bot.complete) note = 'The meeting is long: its page lists everyone.';
      say(card.note, note);
    }
    dirty.clear();
    // After a snapshot, the API's order (newest first) below any bot seen since.
    for (const id of order) {
      const card = ui.get(id)?.card;
      if (card) list.append(card);
    }
    order = [];
    show(empty, bots.size === 0);
  }

  /** @param {ListedBot} bot */
  function build(bot) {
    const name = el('a', { class: 'bot-name', attrs: { href: `#/meetings/${encodeURIComponent(bot.id)}` } });
    const status = el('span', { class: 'bot-status badge' });
    const url = el('p', { class: 'meeting-url' });
    const duration = el('span', { class: 'duration' });
    const participants = el('ul', { class: 'participants', attrs: { 'aria-label': 'Participants' } });
    const note = el('p', { class: 'note', hidden: true });
    const card = el(
      'article',
      { class: 'bot', attrs: { 'data-bot-id': bot.id } },
      el('header', {}, el('h2', {}, name), status),
      url,
      el('p', { class: 'bot-meta' }, el('span', { text: 'Duration ' }), duration),
      participants,
      note,
    );
    const entry = { card, name, status, url, duration, participants, note };
    ui.set(bot.id, entry);
    list.prepend(card); // a bot first seen live is the newest; a snapshot reorders
    return entry;
  }

  // Participants of live bots come from their history, read a few bots at a time.
  /** @type {ListedBot[]} */
  const waiting = [];
  let readers = 0;

  /** @param {ListedBot} bot */
  function loadParticipants(bot) {
    if (bot.loading || ended(bot)) return;
    bot.loading = true;
    waiting.push(bot);
    while (readers < LIST_READERS && waiting.length) void read(/** @type {ListedBot} */ (waiting.shift()));
  }

  /** @param {ListedBot} bot */
  async function read(bot) {
    readers += 1;
    try {
      // Still live when its turn comes (a bot may end while it waits).
      if (alive && !ended(bot)) {
        bot.complete = await readHistory(ctx, bot, (event) => applyState(bot, event), LIST_PAGES);
        bot.read = true;
      }
    } catch {
      // The list still shows the bot; its participants come with live events.
    }
    readers -= 1;
    bot.loading = false;
    if (!alive) return;
    touch(bot);
    if (waiting.length) void read(/** @type {ListedBot} */ (waiting.shift()));
  }

  /** @param {any} event */
  function onEvent(event) {
    const id = event?.bot_id;
    if (typeof id !== 'string') return;
    let bot = bots.get(id);
    if (!bot) {
      const fresh = listed(id);
      bots.set(id, fresh);
      bot = fresh;
      void ctx.api.get(botPath(id)).then(
        (json) => {
          if (!alive) return;
          mergeJson(fresh, json);
          touch(fresh);
          loadParticipants(fresh);
        },
        () => {},
      );
    }
    if (applyState(bot, event)) touch(bot);
  }

  /** The bots by REST: after every (re)connect, and again with backoff while it fails. */
  const snapshot = retried(
    async () => {
      const body = await ctx.api.get(`/v1/bots?limit=${LIST_LIMIT}`);
      if (alive) mergeSnapshot(body.bots ?? []);
    },
    {
      onError: (err, retrying) => say(error, failedToLoad('the meeting bots', err, retrying)),
      onSuccess: () => say(error, ''),
    },
  );

  /** @param {any[]} listedBots */
  function mergeSnapshot(listedBots) {
    const seen = new Set(listedBots.map((json) => json.id));
    for (const id of [...bots.keys()]) {
      if (seen.has(id)) continue;
      ui.get(id)?.card.remove();
      ui.delete(id);
      bots.delete(id);
    }
    order = listedBots.map((json) => json.id);
    for (const json of listedBots) {
      const bot = bots.get(json.id) ?? listed(json.id);
      bots.set(bot.id, bot);
      mergeJson(bot, json);
      touch(bot);
      loadParticipants(bot); // live bots only; from where the last read stopped
    }
    frames.schedule();
  }

  // Durations tick once a second, for the bots still in their meeting.
  const offTick = onTick(() => {
    const now = serverNow();
    for (const bot of bots.values()) {
      const card = ui.get(bot.id);
      if (card && bot.startedAt && !bot.endedAt) setText(card.duration, durationOf(bot, now));
    }
  });

  const offEvents = ctx.events.on('meeting', onEvent);
  const offResync = ctx.onResync(() => void snapshot.run());
  // Not live yet: the stream's first resync loads it (loading now as well would load it twice).
  if (ctx.isLive()) void snapshot.run();

  return function unmount() {
    alive = false;
    snapshot.dispose();
    offTick();
    offEvents();
    offResync();
    frames.dispose();
    view.remove();
  };
}
