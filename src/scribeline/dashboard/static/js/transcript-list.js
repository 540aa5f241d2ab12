/**
 * Transcript lines on screen, for the call view and the captions page, by
 * the rules of lines.js: the finals in seq order, then the lines still in
 * progress (partials, class `interim`), each in place until the line that
 * replaces it. A final has `data-seq` and partials have none, so
 * `[data-seq]` counts finals; a seq already shown is never added twice.
 *
 * Screen readers: the container is a live region that reads additions only
 * (`aria-relevant="additions"`). A partial's element is aria-hidden, so its
 * changing words are never read; its final is a new element put in its
 * place, so each final is read once, and nothing else is.
 */

import { el, setData, setText } from './dom.js';
import { isLatePartial, lineOf, partialKey, speakerKey } from './lines.js';
import { insertSorted, sortedIndex } from './sorted.js';
import { speakerLabel } from './vocab.js';

/** Partials in progress at once (speakers, segments that never got a final): past it the oldest goes. */
const MAX_PARTIALS = 8;
/** Segments remembered as final, so that a late partial of one is dropped. */
const MAX_FINAL_SEGMENTS = 2000;

/**
 * @typedef {import('./lines.js').Line} Line
 *
 * @typedef {object} ListOptions
 * @property {string} [tag] element of a line: 'li' (default) or 'div'
 * @property {string} [className] class every line has
 * @property {number} [maxLines] keep only the newest lines (captions)
 */

export class TranscriptList {
  /**
   * @param {HTMLElement} container a live region (aria-live or role=log)
   * @param {ListOptions} [options]
   */
  constructor(container, options = {}) {
    this.container = container;
    this.tag = options.tag ?? 'li';
    this.className = options.className ?? '';
    this.maxLines = options.maxLines ?? Infinity;
    container.setAttribute('aria-relevant', 'additions');
    /** The finals' seqs, ascending: the container's first children are their lines, in this order. */
    /** @type {number[]} */
    this.seqs = [];
    /** Lines in progress, after the finals, oldest first. */
    /** @type {Map<string, HTMLElement>} */
    this.partials = new Map();
    /** Segment id → the seq of its final. */
    /** @type {Map<string, number>} */
    this.finalSegments = new Map();
    /** Speaker → their newest line. */
    /** @type {Map<string, Line>} */
    this.latest = new Map();
  }

  /** Forget every line. */
  clear() {
    this.seqs = [];
    this.partials.clear();
    this.finalSegments.clear();
    this.latest.clear();
    this.container.replaceChildren();
  }

  get size() {
    return this.seqs.length + this.partials.size;
  }

  /**
   * Show a transcript event.
   * @param {any} event `{"type":"transcript","seq":n,"data":{...}}`
   * @returns {boolean} whether anything changed
   */
  apply(event) {
    const line = lineOf(event.data ?? {}, Number(event.seq));
    return line.final ? this.applyFinal(line) : this.applyPartial(line);
  }

  /** @param {Line} line */
  applyPartial(line) {
    const late = line.segmentId !== null && this.finalSegments.has(line.segmentId);
    if (late || isLatePartial(line, this.latest.get(line.speaker))) return false;
    this.latest.set(line.speaker, line);
    const key = partialKey(line);
    if (key !== speakerKey(line.speaker)) this.removePartial(speakerKey(line.speaker));
    let node = this.partials.get(key);
    if (!node) {
      node = this.createLine();
      node.setAttribute('aria-hidden', 'true');
      this.partials.set(key, node);
      this.container.append(node);
      this.trim();
    }
    this.fill(node, line);
    return true;
  }

  /** @param {Line} line */
  applyFinal(line) {
    if (!Number.isFinite(line.seq) || this.seqs[sortedIndex(this.seqs, line.seq)] === line.seq) return false;
    this.latest.set(line.speaker, line);
    this.removePartial(speakerKey(line.speaker));
    if (line.segmentId !== null) {
      this.removePartial(partialKey(line));
      // A segment's later final replaces its earlier one (history keeps only the latest).
      const earlier = this.finalSegments.get(line.segmentId);
      if (earlier !== undefined) this.removeFinal(earlier);
      this.finalSegments.delete(line.segmentId);
      this.finalSegments.set(line.segmentId, line.seq);
      if (this.finalSegments.size > MAX_FINAL_SEGMENTS) {
        this.finalSegments.delete(/** @type {string} */ (this.finalSegments.keys().next().value));
      }
    }
    const node = this.createLine();
    this.fill(node, line);
    insertSorted(this.container, this.seqs, line.seq, node);
    this.trim();
    return true;
  }

  /**
   * @param {HTMLElement} node
   * @param {Line} line
   */
  fill(node, line) {
    node.classList.toggle('interim', !line.final);
    setData(node, 'final', String(line.final));
    setData(node, 'seq', line.final ? line.seq : null);
    setData(node, 'segmentId', line.segmentId);
    setData(node, 'speaker', line.speaker);
    const [label, text] = /** @type {HTMLElement[]} */ ([...node.children]);
    setText(label, speakerLabel(line.speaker));
    setText(text, line.text);
  }

  /** @param {string} key */
  removePartial(key) {
    this.partials.get(key)?.remove();
    this.partials.delete(key);
  }

  /** @param {number} seq */
  removeFinal(seq) {
    const at = sortedIndex(this.seqs, seq);
    if (this.seqs[at] !== seq) return;
    this.container.children[at]?.remove();
    this.seqs.splice(at, 1);
  }

  /** @returns {HTMLElement} */
  createLine() {
    return el(this.tag, { class: this.className }, el('span', { class: 'speaker' }), el('span', { class: 'text' }));
  }

  /** Drop the oldest lines past `maxLines` (finals first), and partials past MAX_PARTIALS. */
  trim() {
    while (this.size > this.maxLines && this.seqs.length > 0) {
      this.container.children[0]?.remove();
      this.seqs.shift();
    }
    while (this.partials.size > 0 && (this.partials.size > MAX_PARTIALS || this.size > this.maxLines)) {
      this.removePartial(/** @type {string} */ (this.partials.keys().next().value));
    }
  }
}
