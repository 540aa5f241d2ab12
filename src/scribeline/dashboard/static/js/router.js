/**
 * Hash routes (dashboard spec, section 3) and the views they mount.
 *
 * A view module exports `mount(root, ctx, params)` and returns `unmount()`.
 * Modules load on first use; one that cannot be loaded (or throws while
 * mounting) leaves an error panel in its place, not a blank page.
 */

import { el, errorPanel } from './dom.js';

/**
 * @typedef {object} Route
 * @property {string} nav which nav link is current: calls, campaigns or meetings
 * @property {string} title
 * @property {string} module
 * @property {() => Promise<{mount: Function}>} load
 * @property {Record<string, string|null>} params
 */

/** @type {Array<[RegExp, (m: RegExpMatchArray) => {nav: string, title: string, module: string, params: Record<string, string|null>}]>} */
const TABLE = [
  [/^#\/calls\/?$/, () => ({ nav: 'calls', title: 'Live calls', module: './calls-grid.js', params: {} })],
  [/^#\/calls\/([^/]+)$/, (m) => ({ nav: 'calls', title: 'Call', module: './call-view.js', params: { callSid: decode(m[1]) } })],
  [/^#\/campaigns\/?$/, () => ({ nav: 'campaigns', title: 'Campaigns', module: './campaigns.js', params: {} })],
  // '#/meetings/' is the list as well: a meeting's back link uses it, so the nav link stays the only a[href="#/meetings"].
  [/^#\/meetings\/?$/, () => ({ nav: 'meetings', title: 'Meetings', module: './meetings-list.js', params: {} })],
  [/^#\/meetings\/([^/]+)$/, (m) => ({ nav: 'meetings', title: 'Meeting', module: './meeting-view.js', params: { botId: decode(m[1]) } })],
];

/** Static specifiers, so every module a route can load is plain to see (no build step rewrites them). */
/** @type {Record<string, () => Promise<any>>} */
const LOADERS = {
  './calls-grid.js': () => import('./calls-grid.js'),
  './call-view.js': () => import('./call-view.js'),
  './campaigns.js': () => import('./campaigns.js'),
  './meetings-list.js': () => import('./meetings-list.js'),
  './meeting-view.js': () => import('./meeting-view.js'),
};

export const DEFAULT_ROUTE = '#/calls';

/** @param {string} text */
function decode(text) {
  try {
    return decodeURIComponent(text);
  } catch {
    return text;
  }
}

/**
 * The route of a location hash, or null when none matches.
 * @param {string} hash
 * @returns {Route|null}
 */
export function parseRoute(hash) {
  for (const [pattern, build] of TABLE) {
    const match = hash.match(pattern);
    if (match) {
      const route = build(match);
      return { ...route, load: LOADERS[route.module] };
    }
  }
  return null;
}

export class Router {
  /**
   * @param {HTMLElement} root where views mount
   * @param {import('./app.js').ViewContext} ctx
   * @param {NodeListOf<HTMLAnchorElement>} navLinks
   */
  constructor(root, ctx, navLinks) {
    this.root = root;
    this.ctx = ctx;
    this.navLinks = navLinks;
    /** @type {(() => void)|null} */
    this.unmount = null;
    this.generation = 0;
    this.onHashChange = () => this.route();
  }

  start() {
    window.addEventListener('hashchange', this.onHashChange);
    this.route();
  }

  stop() {
    window.removeEventListener('hashchange', this.onHashChange);
    this.generation += 1;
    this.clear();
  }

  clear() {
    const unmount = this.unmount;
    this.unmount = null;
    if (unmount) {
      try {
        unmount();
      } catch (error) {
        console.error(error);
      }
    }
    this.root.replaceChildren();
  }

  async route() {
    const generation = ++this.generation;
    if (location.hash.startsWith('#code=')) return; // A sign-in link: app.js starts over with it.
    if (location.hash === '' || location.hash === '#' || location.hash === '#/') {
      history.replaceState(null, '', DEFAULT_ROUTE);
    }
    const route = parseRoute(location.hash);
    this.clear();
    this.markNav(route?.nav ?? '');
    if (!route) {
      this.root.append(
        errorPanel('Page not found', 'There is nothing at this address.'),
        el('p', {}, el('a', { attrs: { href: '#/' }, text: 'Go to the live calls' })),
      );
      return;
    }
    document.title = `${route.title} · Scribeline`;
    let module;
    try {
      module = await route.load();
    } catch (error) {
      if (generation !== this.generation) return;
      console.error(error);
      this.root.append(errorPanel(`${route.title}: not available`, `This view could not be loaded (${route.module.slice(2)}).`));
      return;
    }
    if (generation !== this.generation) return;
    try {
      const unmount = module.mount(this.root, this.ctx, route.params);
      this.unmount = typeof unmount === 'function' ? unmount : null;
    } catch (error) {
      console.error(error);
      this.clear();
      this.root.append(errorPanel(`${route.title}: something went wrong`, String(/** @type {Error} */ (error).message)));
    }
  }

  /** @param {string} nav */
  markNav(nav) {
    for (const link of this.navLinks) {
      if (link.dataset.nav === nav) link.setAttribute('aria-current', 'page');
      else link.removeAttribute('aria-current');
    }
  }
}
