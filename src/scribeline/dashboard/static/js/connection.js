/**
 * The connection indicator (`#connection[data-state]`), always visible in
 * the top bar: the state of the organization event stream, or signed-out.
 */

import { setData, setText } from './dom.js';

/** @type {Record<string, {label: string, title: string}>} */
const STATES = {
  connecting: { label: 'Connecting…', title: 'Opening the live event stream' },
  live: { label: 'Live', title: 'Receiving events as they happen' },
  reconnecting: { label: 'Reconnecting…', title: 'The connection dropped; trying again with backoff' },
  stale: { label: 'Stale', title: 'Nothing arrived for 35 seconds; reconnecting' },
  'signed-out': { label: 'Signed out', title: 'Not signed in' },
};

export class ConnectionIndicator {
  /** @param {HTMLElement} node `#connection`, with a `.label` inside */
  constructor(node) {
    this.node = node;
    this.label = node.querySelector('.label') ?? node;
  }

  /** @param {string} state */
  render(state) {
    const info = STATES[state] ?? { label: state, title: '' };
    setData(this.node, 'state', state);
    setText(this.label, info.label);
    if (this.node.title !== info.title) this.node.title = info.title;
  }
}
