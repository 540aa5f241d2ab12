/**
 * A transcript event as a line, and which line a partial gives way to
 * (PROTOCOL section 1, `segment_id`). transcript-list.js shows lines by
 * these rules; calls-store.js keeps each call's newest line by them.
 *
 * - A final always goes in seq order.
 * - A partial with a segment_id stands for its segment until the segment's
 *   final replaces it; one that comes after that final is late: dropped.
 * - A partial without a segment_id is keyed by its speaker: it stands until
 *   that speaker's next line (a partial or a final) replaces it. One whose
 *   words are the start of that speaker's latest line, a final, is the late
 *   partial of that final: dropped (otherwise it would stay on screen as a
 *   line in progress after the words were final).
 */

/**
 * @typedef {object} Line
 * @property {string} speaker `user` or `assistant`
 * @property {string} text
 * @property {boolean} final
 * @property {number} seq
 * @property {string|null} segmentId
 */

/**
 * A transcript event's `data` (or a snapshot's `latest`) as a line.
 * @param {any} data
 * @param {number} seq
 * @returns {Line}
 */
export function lineOf(data, seq) {
  return {
    speaker: String(data.speaker ?? ''),
    text: String(data.content ?? ''),
    final: data.is_final !== false,
    seq,
    segmentId: typeof data.segment_id === 'string' && data.segment_id ? data.segment_id : null,
  };
}

/**
 * What the partial of a speaker without a segment_id is kept under.
 * @param {string} speaker
 */
export function speakerKey(speaker) {
  return `speaker:${speaker}`;
}

/**
 * What an interim line is kept under: its segment, or else its speaker.
 * @param {Line} line
 */
export function partialKey(line) {
  return line.segmentId === null ? speakerKey(line.speaker) : `segment:${line.segmentId}`;
}

/**
 * Whether `partial` comes too late: `latest` is the newest line of the same
 * speaker (or of the call) and is the final it was a partial of.
 * @param {Line} partial
 * @param {Line|null|undefined} latest
 */
export function isLatePartial(partial, latest) {
  if (partial.final || !latest?.final || latest.speaker !== partial.speaker) return false;
  if (partial.segmentId !== null) return partial.segmentId === latest.segmentId;
  const words = normalise(partial.text);
  return words !== '' && `${normalise(latest.text)} `.startsWith(`${words} `);
}

/** @param {string} text lower case, words only, one space between them */
function normalise(text) {
  return text.toLowerCase().replace(/[^\p{L}\p{N}]+/gu, ' ').trim();
}
