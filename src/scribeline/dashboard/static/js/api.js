/**
 * REST calls to this server with the session's access token as Bearer.
 * A 401 is retried once with a fresh token (the one held may have been
 * minted before a server restart or have run out while the tab slept).
 * Errors keep their `.status`: 401 means signed out, 0 that the server
 * could not be reached (worth another try, async.js `transient`).
 */

import { httpError, requestJson } from './http.js';

/**
 * @typedef {object} Api
 * @property {(path: string) => Promise<any>} get
 * @property {(path: string, body?: unknown) => Promise<any>} post
 */

/**
 * @param {import('./session.js').Session} session
 * @returns {Api}
 */
export function createApi(session) {
  /**
   * @param {string} method
   * @param {string} path
   * @param {unknown} [body]
   */
  async function call(method, path, body) {
    if (!path.startsWith('/') || path.startsWith('//')) throw new Error(`not a path on this server: ${path}`);
    for (let attempt = 0; ; attempt += 1) {
      let token;
      try {
        token = attempt === 0 ? await session.getToken() : await session.refresh();
      } catch (error) {
        // No token: a sign-out only when the session is over. A refresh that could not
        // reach the server keeps its own error (status 0), which callers retry.
        if (session.closed) throw httpError(401, 'authentication_failed', 'Signed out');
        throw error;
      }
      try {
        return await requestJson(method, path, { body, headers: { Authorization: `Bearer ${token}` } });
      } catch (error) {
        if (/** @type {{status?: number}} */ (error).status !== 401 || attempt > 0) throw error;
      }
    }
  }
  return {
    get: (path) => call('GET', path),
    post: (path, body) => call('POST', path, body),
  };
}
