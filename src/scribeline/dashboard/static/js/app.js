/**
 * The dashboard page: wires the session, the event stream, the connection
 * indicator and the router together.
 *
 * Views get a context (`ctx`); the part every view may rely on is:
 *   api:       { get(path), post(path, body) } → parsed JSON; an Error with
 *              `.status` (and `.code`) on failure
 *   events:    { on(topic, handler) → off }, topic 'transcription' |
 *              'call_status' | 'campaign' | 'meeting'; handler(message)
 *   onResync:  (fn) → off; fn runs after every (re)connect, once the stream
 *              is subscribed: refetch the view's snapshot then
 *   isLive():  whether the stream is live now; a view mounted while it is
 *              loads its snapshot at once, else its first resync does
 *   session:   { readOnly, orgName }
 * Additions used by the calls views: tokens.get()/refresh() (the access
 * token for a view's own WebSocket), captionsLink(callSid).
 */

import { createApi } from './api.js';
import { ConnectionIndicator } from './connection.js';
import { byId, setText, show } from './dom.js';
import { Router } from './router.js';
import { Session, readCode } from './session.js';
import { OrgSocket } from './socket.js';

/**
 * @typedef {object} ViewContext
 * @property {import('./api.js').Api} api
 * @property {{on: (topic: import('./socket.js').Topic, handler: (message: any) => void) => () => void}} events
 * @property {(fn: () => void) => () => void} onResync
 * @property {{readonly readOnly: boolean, readonly orgName: string}} session
 * @property {() => boolean} isLive
 * @property {{get: () => Promise<string>, refresh: () => Promise<string>}} tokens
 * @property {(callSid: string) => Promise<{url: string, token: string, expires_at: string}>} captionsLink
 */

const session = new Session();
const socket = new OrgSocket(session);

/** @type {ViewContext} */
const ctx = {
  api: createApi(session),
  events: { on: (topic, handler) => socket.on(topic, handler) },
  onResync: (fn) => socket.onResync(fn),
  session: {
    get readOnly() {
      return session.readOnly;
    },
    get orgName() {
      return session.orgName;
    },
  },
  isLive: () => socket.live,
  tokens: { get: () => session.getToken(), refresh: () => session.refresh() },
  captionsLink: (callSid) => session.captionsLink(callSid),
};

const indicator = new ConnectionIndicator(byId('connection'));
const router = new Router(byId('view'), ctx, document.querySelectorAll('a[data-nav]'));
const signOutButton = byId('sign-out');

socket.onState((state) => {
  if (session.state !== 'signed-out') indicator.render(state);
});

session.onChange(() => {
  if (session.state === 'signed-in') {
    document.body.dataset.auth = 'signed-in';
    setText(byId('org-name'), session.orgName);
    const role = byId('session-role');
    setText(role, session.readOnly ? 'read-only' : '');
    show(role, session.readOnly);
    show(byId('signed-out'), false);
    socket.start();
    router.start();
  } else if (session.state === 'signed-out') {
    document.body.dataset.auth = 'signed-out';
    router.stop();
    socket.stop('signed-out');
    indicator.render('signed-out');
    setText(byId('org-name'), '');
    show(byId('session-role'), false);
    const error = byId('signin-error');
    setText(error, session.reason === 'code-refused' ? session.message : '');
    show(error, session.reason === 'code-refused');
    const note = byId('signed-out-note');
    const noted = session.reason === 'ended' || session.reason === 'signed-out';
    setText(note, noted ? session.message : '');
    show(note, noted);
    show(byId('signed-out'), true);
    document.title = 'Signed out · Scribeline';
  }
});

signOutButton.addEventListener('click', async () => {
  signOutButton.setAttribute('disabled', '');
  try {
    await session.signOut();
  } finally {
    signOutButton.removeAttribute('disabled');
  }
});

// A sign-in link opened in a tab that shows the dashboard changes only the fragment.
window.addEventListener('hashchange', () => {
  if (readCode(location.hash) !== null) location.reload();
});

session.start();
