/**
 * A meeting bot as both meeting views keep it (meetings-list.js, the list;
 * meeting-view.js, one bot): its state, how REST and events merge into it,
 * how its stored history is read, and the header and participants both show.
 *
 * Bot events carry a per-bot `seq` (the `meeting` topic, PROTOCOL section 4).
 * Speaking follows a participant's latest speaking event by seq, and a status
 * only moves forward (joining → recording → finished or failed, vocab.js), so
 * the REST view, the history and live events may arrive in any order.
 */

import { formatDuration, parseTime, serverNow } from './clock.js';
import { el, setData, setText } from './dom.js';
import { BOT_STATUSES, statusStep } from './vocab.js';

const EVENT_PAGE = 500;

/**
 * @typedef {object} Participant
 * @property {string|null} name
 * @property {boolean} speaking
 * @property {number} speakingSeq
 *
 * @typedef {object} Bot
 * @property {string} id
 * @property {string} status
 * @property {string} name
 * @property {string} url
 * @property {number|null} startedAt epoch ms
 * @property {number|null} endedAt epoch ms
 * @property {string|null} reason
 * @property {string|null} error
 * @property {Map<string, Participant>} participants
 * @property {number} fetchedSeq every stored event up to it has been read
 */

/** @param {Bot} bot */
export const ended = (bot) => bot.status === 'finished' || bot.status === 'failed';

/** @param {string} id */
export const botPath = (id) => `/v1/bots/${encodeURIComponent(id)}`;

/**
 * @param {Bot} bot
 * @param {number} now epoch ms
 */
export function durationOf(bot, now) {
  if (!bot.startedAt) return ended(bot) ? '—' : 'not started';
  return formatDuration(((bot.endedAt ?? now) - bot.startedAt) / 1000);
}

/**
 * @param {string} id
 * @returns {Bot}
 */
export function newBot(id) {
  return {
    id,
    status: 'joining',
    name: '',
    url: '',
    startedAt: null,
    endedAt: null,
    reason: null,
    error: null,
    participants: new Map(),
    fetchedSeq: 0,
  };
}

/**
 * Merge the REST view of a bot (GET /v1/bots, /v1/bots/{id}); URLs it may carry are ignored.
 * @param {Bot} bot
 * @param {any} json
 */
export function mergeJson(bot, json) {
  bot.name = json.bot_name ?? bot.name;
  bot.url = json.meeting_url ?? bot.url;
  if (statusStep(BOT_STATUSES, json.status, bot.status) >= 0) {
    bot.status = json.status;
    bot.startedAt = parseTime(json.started_at) ?? bot.startedAt;
    bot.endedAt = parseTime(json.ended_at) ?? bot.endedAt;
    bot.reason = json.stop_reason ?? bot.reason;
    bot.error = json.error ?? bot.error;
  }
}

/**
 * @param {Bot} bot
 * @param {string} status
 */
function advance(bot, status) {
  if (statusStep(BOT_STATUSES, status, bot.status) > 0) bot.status = status;
}

/**
 * Apply a bot event's effect on the bot's status and participants.
 * (The org stream's events carry no time: a live start or stop is stamped
 * with the server's clock as estimated here until the next snapshot brings the stored one.)
 * @param {Bot} bot
 * @param {any} event
 * @returns {boolean} whether it changed anything shown in the list
 */
export function applyState(bot, event) {
  const data = event.data ?? {};
  const seq = event.seq ?? 0;
  switch (event.type) {
    case 'start':
      advance(bot, 'recording');
      bot.startedAt ??= serverNow();
      return true;
    case 'stop':
    case 'error':
      advance(bot, event.type === 'stop' ? 'finished' : 'failed');
      bot.endedAt ??= serverNow();
      if (event.type === 'stop') bot.reason = data.reason ?? bot.reason;
      else bot.error = data.message ?? bot.error;
      return true;
    case 'participant-tracked':
    case 'started-speaking':
    case 'stopped-speaking': {
      const id = data.participantId;
      if (typeof id !== 'string') return false;
      const p = bot.participants.get(id) ?? { name: null, speaking: false, speakingSeq: 0 };
      p.name = data.participantName ?? p.name;
      if (event.type !== 'participant-tracked' && seq > p.speakingSeq) {
        p.speaking = event.type === 'started-speaking';
        p.speakingSeq = seq;
      }
      bot.participants.set(id, p);
      return true;
    }
    default:
      return false;
  }
}

/**
 * Read a bot's stored events after `bot.fetchedSeq`, page by page, into `onEvent`.
 * @param {{api: import('./api.js').Api}} ctx
 * @param {Bot} bot
 * @param {(event: any) => void} onEvent
 * @param {number} [maxPages]
 * @returns {Promise<boolean>} whether it read to the end (false: it stopped at `maxPages`)
 */
export async function readHistory(ctx, bot, onEvent, maxPages = Infinity) {
  for (let page = 0; page < maxPages; page += 1) {
    const body = await ctx.api.get(`${botPath(bot.id)}/events?after=${bot.fetchedSeq}&limit=${EVENT_PAGE}`);
    for (const event of body.events ?? []) {
      onEvent(event);
      bot.fetchedSeq = Math.max(bot.fetchedSeq, event.seq ?? 0);
    }
    if (body.next_cursor === null || body.next_cursor === undefined) return true;
    const next = Number(body.next_cursor);
    if (Number.isFinite(next)) bot.fetchedSeq = Math.max(bot.fetchedSeq, next);
  }
  return false;
}

/**
 * The participants as chips (`li[data-participant-id]`), updated in place.
 * @param {HTMLElement} list
 * @param {Bot} bot
 */
export function renderParticipants(list, bot) {
  const items = /** @type {HTMLElement[]} */ ([...list.children]);
  let i = 0;
  for (const [id, p] of bot.participants) {
    let li = items[i];
    if (!li) {
      li = el('li');
      list.append(li);
    }
    setData(li, 'participantId', id);
    setText(li, p.name ?? `Participant ${id}`);
    const speaking = p.speaking && !ended(bot);
    li.classList.toggle('speaking', speaking);
    setData(li, 'speaking', String(speaking));
    i += 1;
  }
  for (; i < items.length; i += 1) items[i].remove();
}

/**
 * A bot's name, status badge, meeting URL and duration.
 * @param {{card: HTMLElement, name: HTMLElement, status: HTMLElement, url: HTMLElement, duration: HTMLElement}} ui
 * @param {Bot} bot
 * @param {number} now epoch ms
 */
export function renderHeader(ui, bot, now) {
  setText(ui.name, bot.name || bot.id);
  setText(ui.status, bot.status);
  setData(ui.status, 'status', bot.status);
  setData(ui.card, 'status', bot.status);
  setText(ui.url, bot.url);
  setText(ui.duration, durationOf(bot, now));
}
