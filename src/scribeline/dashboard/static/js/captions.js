/**
 * The captions page (`captions.html#call=<sid>&token=<jwt>`): large live
 * captions of one call for a viewer who cannot hear it. It needs no session:
 * the link's token is read-only and restricted to that call. The token is
 * read from the fragment (which never reaches a server or a Referer) and the
 * fragment is then removed from the address bar, so the token stays out of
 * screenshots and shared screens; it lives only in memory.
 */

import { byId, setData, setText, show } from './dom.js';
import { TranscriptList } from './transcript-list.js';
import { TranscriptStream } from './transcript-stream.js';

const KEEP_LINES = 6;

/** @type {Record<string, string>} */
const LABELS = {
  connecting: 'Connecting…',
  live: 'Live',
  reconnecting: 'Reconnecting…',
  stale: 'Reconnecting…',
  ended: 'Call ended',
  refused: 'Not available',
};

/** @type {Record<string, string>} */
const REFUSALS = {
  authentication_failed: 'This captions link has expired or has been revoked. Ask for a new one.',
  forbidden: 'This captions link does not open this call.',
  not_found: 'This call does not exist.',
  invalid_call_sid: 'This captions link is damaged. Ask for a new one.',
};

const stateNode = byId('captions-state');
const stateLabel = stateNode.querySelector('.label') ?? stateNode;
const errorNode = byId('captions-error');
const list = new TranscriptList(byId('captions'), { tag: 'div', className: 'line', maxLines: KEEP_LINES });

/** @param {string} state */
function setState(state) {
  setData(stateNode, 'state', state);
  setText(stateLabel, LABELS[state] ?? state);
}

/** @param {string} message */
function fail(message) {
  setState('refused');
  setText(errorNode, message);
  show(errorNode, true);
}

const params = new URLSearchParams(location.hash.slice(1));
const callSid = params.get('call') ?? '';
const token = params.get('token') ?? '';
if (location.hash) history.replaceState(null, '', `${location.pathname}${location.search}`);
// Another captions link pasted into this tab changes only the fragment: start over with it.
window.addEventListener('hashchange', () => {
  if (location.hash.includes('token=')) location.reload();
});

if (!callSid || !token) {
  fail('This captions link is incomplete. Open the whole link again (for safety it leaves the address bar once read, so reloading the page cannot reuse it).');
} else {
  setText(byId('captions-call'), `Call ${callSid}`);
  const stream = new TranscriptStream({
    callSid,
    getToken: async () => token,
    refreshToken: null,
    onEvent: (event) => {
      if (event.type === 'transcript') list.apply(event);
    },
    onStatus: () => {},
    onState: (state, error) => {
      setState(state);
      if (state === 'refused') fail(REFUSALS[error?.code ?? ''] ?? `The captions were refused (${error?.code ?? 'error'}).`);
      else show(errorNode, false);
    },
    onReset: () => list.clear(),
  });
  stream.start();
}
