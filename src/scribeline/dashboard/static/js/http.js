/**
 * fetch() for JSON endpoints. Failures become an Error with `.status` (0 when
 * the server could not be reached), `.code` (the server's `error` field) and
 * the server's message, which is safe to show (errors.py writes it for users).
 */

/**
 * @param {number} status
 * @param {string} code
 * @param {string} message
 * @returns {Error & {status: number, code: string}}
 */
export function httpError(status, code, message) {
  const error = /** @type {Error & {status: number, code: string}} */ (new Error(message));
  error.status = status;
  error.code = code;
  return error;
}

/**
 * @param {string} method
 * @param {string} url
 * @param {{body?: unknown, headers?: Record<string, string>, referrerPolicy?: ReferrerPolicy}} [options]
 * @returns {Promise<any>} the parsed body, or null for 204
 */
export async function requestJson(method, url, options = {}) {
  const headers = { Accept: 'application/json', ...options.headers };
  /** @type {RequestInit} */
  const init = { method, headers, credentials: 'same-origin', cache: 'no-store' };
  if (options.referrerPolicy) init.referrerPolicy = options.referrerPolicy;
  if (options.body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(options.body);
  }
  let response;
  try {
    response = await fetch(url, init);
  } catch {
    throw httpError(0, 'network_error', 'The server cannot be reached');
  }
  if (response.status === 204) return null;
  let data = null;
  try {
    data = await response.json();
  } catch {
    // A proxy's HTML error page, or an empty body.
  }
  if (!response.ok) {
    const code = typeof data?.error === 'string' ? data.error : 'http_error';
    const message = typeof data?.message === 'string' ? data.message : `HTTP ${response.status}`;
    throw httpError(response.status, code, message);
  }
  return data;
}
