/**
 * Sign-in, the access token and sign-out (dashboard spec, section 1).
 *
 * The access token lives only in this module's memory: never in storage,
 * never in a URL. It is refreshed at 80% of its life through
 * `POST /dashboard/api/token`, which the HttpOnly session cookie
 * authenticates; the page itself never sees that cookie.
 */

import { Backoff } from './backoff.js';
import { httpError, requestJson } from './http.js';

const SESSION_URL = '/dashboard/api/session';
const TOKEN_URL = '/dashboard/api/token';
const CAPTIONS_URL = '/dashboard/api/captions';
const REFRESH_AT = 0.8;
/** A token this close to expiry is refreshed before use. */
const MARGIN_MS = 15000;

/**
 * The page's Referrer-Policy is no-referrer, under which the Fetch standard
 * ("append a request `Origin` header") has a POST carry `Origin: null`, even
 * to its own origin. Chromium sends the real origin all the same; to depend
 * on no browser's leniency, the session endpoints (which check Origin) are
 * called with same-origin: the origin goes to this server, nothing anywhere else.
 */
const SESSION_FETCH = { referrerPolicy: /** @type {ReferrerPolicy} */ ('same-origin') };

/**
 * @typedef {'pending'|'signed-in'|'signed-out'} SessionState
 * @typedef {'none'|'code-refused'|'ended'|'signed-out'} SignedOutReason
 */

export class Session {
  constructor() {
    /** @type {SessionState} */
    this.state = 'pending';
    /** @type {SignedOutReason} */
    this.reason = 'none';
    this.message = '';
    this.token = '';
    this.expiresAt = 0;
    this.readOnly = true;
    this.orgName = '';
    this.sessionExpiresAt = '';
    this.refreshTimer = 0;
    /** @type {Promise<string>|null} */
    this.refreshing = null;
    /** @type {Set<(session: Session) => void>} */
    this.listeners = new Set();
    this.retry = new Backoff(1000, 30000);
    this.orgId = null;
    /**
     * Bumped when sign-out begins and when the session ends: the answer to a
     * token request sent before (still in flight) is then ignored, so it
     * cannot sign the page back in.
     */
    this.generation = 0;
    this.signingOut = false;
    // Other tabs of this browser share the cookie. The server closes a revoked session's
    // open sockets too, but a sign-out here tells them at once (not only when a socket
    // closes); each then asks the server (a message alone proves nothing) and ends on its 401.
    this.channel = typeof BroadcastChannel === 'function' ? new BroadcastChannel('scribeline-session') : null;
    this.channel?.addEventListener('message', () => {
      if (this.state === 'signed-in') this.refresh().catch(() => {});
    });
  }

  /**
   * @param {(session: Session) => void} fn called on every change of state
   * @returns {() => void} off
   */
  onChange(fn) {
    this.listeners.add(fn);
    return () => this.listeners.delete(fn);
  }

  /**
   * Sign in with the code in the fragment if there is one, else resume the
   * session of the cookie. Resolves once signed in or signed out; while the
   * server cannot be reached it keeps trying.
   */
  async start() {
    const code = readCode(location.hash);
    if (code !== null) {
      // The code leaves the address bar (and the history entry) before the request goes out.
      history.replaceState(null, '', `${location.pathname}${location.search}#/calls`);
      const generation = this.generation;
      try {
        this.accept(await requestJson('POST', SESSION_URL, { body: { code }, ...SESSION_FETCH }), generation);
        this.channel?.postMessage('changed');
      } catch (error) {
        const status = /** @type {{status?: number}} */ (error).status;
        if (status === 401) {
          this.end('code-refused', 'This sign-in link has expired or has already been used. Ask for a new one.');
        } else {
          this.end('code-refused', `The sign-in failed: ${/** @type {Error} */ (error).message}`);
        }
      }
      return;
    }
    for (;;) {
      try {
        await this.refresh();
        return;
      } catch (error) {
        if (this.state === 'signed-out') return;
        await delay(this.retry.next());
      }
    }
  }

  /**
   * A token good for at least a few more seconds.
   * @returns {Promise<string>}
   */
  async getToken() {
    if (this.closed) throw signedOutError();
    if (this.token && Date.now() < this.expiresAt - MARGIN_MS) return this.token;
    return this.refresh();
  }

  /**
   * Fetch a fresh access token (one request at a time, however many callers).
   * A 401 means the session is over (expired, revoked, or signed out elsewhere).
   * Once sign-out has begun it fails at once, and an answer still in flight is dropped.
   * @returns {Promise<string>}
   */
  refresh() {
    if (this.closed) return Promise.reject(signedOutError());
    if (!this.refreshing) {
      const generation = this.generation;
      const request = requestJson('POST', TOKEN_URL, SESSION_FETCH)
        .then((body) => {
          if (!this.accept(body, generation)) throw signedOutError();
          return this.token;
        })
        .catch((error) => {
          if (generation !== this.generation) throw error; // sign-out or the end came first
          if (error.status === 401 || error.status === 403) {
            if (this.state === 'pending') this.end('none', '');
            else this.end('ended', 'Your session has ended. Open a new sign-in link to continue.');
          } else if (this.state === 'signed-in') {
            this.schedule(this.retry.next());
          }
          throw error;
        })
        .finally(() => {
          if (this.refreshing === request) this.refreshing = null;
        });
      this.refreshing = request;
    }
    return this.refreshing;
  }

  /** Signed out, or signing out: no token is handed out or accepted any more. */
  get closed() {
    return this.state === 'signed-out' || this.signingOut;
  }

  /**
   * A captions link for one call (read-only, restricted to that call).
   * @param {string} callSid
   * @returns {Promise<{url: string, token: string, expires_at: string}>}
   */
  captionsLink(callSid) {
    return requestJson('POST', CAPTIONS_URL, { body: { call_sid: callSid }, ...SESSION_FETCH });
  }

  /**
   * Revoke the session on the server (every token minted from it dies) and forget the token.
   * From the first moment no token is handed out, and a refresh in flight is ignored
   * whatever it brings back (the server may answer it before or after the revocation).
   */
  async signOut() {
    if (this.closed) return;
    this.signingOut = true;
    this.generation += 1;
    window.clearTimeout(this.refreshTimer);
    this.token = '';
    this.expiresAt = 0;
    try {
      await requestJson('DELETE', SESSION_URL, SESSION_FETCH);
      this.channel?.postMessage('changed');
      this.end('signed-out', 'You have signed out.');
    } catch {
      this.end('signed-out', 'Signed out of this page, but the server could not be told: the session lasts until it expires.');
    }
  }

  /**
   * Take a SessionBody, unless the session has ended or sign-out has begun
   * since its request was sent (`generation`, read then).
   * @param {any} body
   * @param {number} generation
   * @returns {boolean} whether it was taken
   */
  accept(body, generation) {
    if (generation !== this.generation || this.closed) return false;
    if (!body || typeof body.access_token !== 'string') throw new Error('Unexpected answer from the server');
    const orgId = body.organization?.id ?? null;
    if (this.state === 'signed-in' && (orgId !== this.orgId || (body.read_only === true) !== this.readOnly)) {
      // The cookie now belongs to another sign-in (another tab opened a link): what
      // this page shows belongs to the old one, so start over.
      location.reload();
      return true;
    }
    this.orgId = orgId;
    this.token = body.access_token;
    const lifeMs = Math.max(1, Number(body.expires_in) || 60) * 1000;
    this.expiresAt = Date.now() + lifeMs;
    this.readOnly = body.read_only === true;
    this.orgName = String(body.organization?.name ?? '');
    this.sessionExpiresAt = String(body.session_expires_at ?? '');
    this.retry.reset();
    this.schedule(lifeMs * REFRESH_AT);
    if (this.state !== 'signed-in') {
      this.state = 'signed-in';
      this.emit();
    }
    return true;
  }

  /** @param {number} ms */
  schedule(ms) {
    window.clearTimeout(this.refreshTimer);
    this.refreshTimer = window.setTimeout(() => {
      this.refresh().catch(() => {
        // refresh() has already ended the session or scheduled a retry.
      });
    }, ms);
  }

  /**
   * @param {SignedOutReason} reason
   * @param {string} message
   */
  end(reason, message) {
    window.clearTimeout(this.refreshTimer);
    this.token = '';
    this.expiresAt = 0;
    if (this.state === 'signed-out') return;
    this.generation += 1;
    this.signingOut = false;
    this.state = 'signed-out';
    this.reason = reason;
    this.message = message;
    this.emit();
  }

  emit() {
    for (const fn of this.listeners) fn(this);
  }
}

/**
 * The sign-in code of a `#code=scd_...` fragment, or null.
 * @param {string} hash
 */
export function readCode(hash) {
  if (!hash.startsWith('#code=')) return null;
  return new URLSearchParams(hash.slice(1)).get('code') ?? '';
}

/** What a token request gets once the session is over (api.js reports it as a 401). */
function signedOutError() {
  return httpError(401, 'authentication_failed', 'Signed out');
}

/** @param {number} ms */
function delay(ms) {
  return new Promise((resolve) => window.setTimeout(resolve, ms));
}
