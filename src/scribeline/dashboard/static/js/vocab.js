/**
 * The wire's words (PROTOCOL sections 1, 2 and 4): which call statuses are
 * live or final, how speakers are named on screen, and in which order the
 * statuses of campaigns, contacts and meeting bots go. Elements keep the wire
 * value in `data-status` / `data-speaker`, and badges show it as it is.
 */

/** The statuses of a call that is still going on. */
export const LIVE_STATUSES = ['queued', 'ringing', 'in-progress'];
const TERMINAL = new Set(['completed', 'failed', 'busy', 'no-answer', 'canceled']);

/** @param {string} status */
export function isTerminal(status) {
  return TERMINAL.has(status);
}

const SPEAKERS = new Map([
  ['user', 'Caller'],
  ['assistant', 'Assistant'],
]);

/** @param {string} speaker `user` (the person on the phone) or `assistant` (the voice agent) */
export function speakerLabel(speaker) {
  return SPEAKERS.get(speaker) ?? (speaker || 'Unknown');
}

/*
 * Statuses that only move forward. Campaign and bot events carry no seq on
 * the org stream, so a REST snapshot and a live event may arrive in either
 * order; ranking the statuses lets neither take the other back.
 */

/** @typedef {Readonly<Record<string, number>>} Ranks */

/** @type {Ranks} */
export const CAMPAIGN_STATUSES = { draft: 0, running: 1, completed: 2 };
/** A contact's outcome is recorded once (PROTOCOL section 2). @type {Ranks} */
export const CONTACT_STATUSES = { pending: 0, in_progress: 1, success: 2, failed: 2, skipped: 2 };
/** @type {Ranks} */
export const BOT_STATUSES = { joining: 0, recording: 1, finished: 2, failed: 2 };

/**
 * How far `next` is ahead of `current` (negative: behind; an unknown status ranks lowest).
 * @param {Ranks} ranks
 * @param {unknown} next
 * @param {unknown} current
 */
export function statusStep(ranks, next, current) {
  return (ranks[String(next)] ?? -1) - (ranks[String(current)] ?? -1);
}
