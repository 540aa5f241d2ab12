/**
 * Tiny DOM helpers. Text only ever goes in through `textContent`, so a
 * transcript that contains markup is shown literally (issue 12, security).
 * Nothing here reads or writes `innerHTML`, and nothing sets a `style`
 * attribute (the page's CSP forbids inline styles).
 */

/**
 * Create an element.
 * @param {string} tag
 * @param {{class?: string, text?: string, attrs?: Record<string, string>, hidden?: boolean}} [options]
 * @param {...(Node|null|undefined)} children
 * @returns {HTMLElement}
 */
export function el(tag, options = {}, ...children) {
  const node = document.createElement(tag);
  if (options.class) node.className = options.class;
  if (options.attrs) {
    for (const [name, value] of Object.entries(options.attrs)) {
      if (name === 'style' || name.startsWith('on')) throw new Error(`refusing attribute ${name}`);
      node.setAttribute(name, value);
    }
  }
  if (options.text !== undefined) node.textContent = options.text;
  if (options.hidden) node.hidden = true;
  for (const child of children) if (child) node.append(child);
  return node;
}

/**
 * Set a node's text, touching the DOM only when it changes.
 * @param {Node} node
 * @param {unknown} text
 */
export function setText(node, text) {
  const value = text === null || text === undefined ? '' : String(text);
  if (node.textContent !== value) node.textContent = value;
}

/**
 * Set or remove a data attribute, touching the DOM only when it changes.
 * @param {HTMLElement} node
 * @param {string} name without the `data-` prefix
 * @param {string|number|null|undefined} value null or undefined removes it
 */
export function setData(node, name, value) {
  if (value === null || value === undefined) {
    if (name in node.dataset) delete node.dataset[name];
    return;
  }
  const text = String(value);
  if (node.dataset[name] !== text) node.dataset[name] = text;
}

/**
 * Show or hide a node with the `hidden` attribute.
 * @param {HTMLElement} node
 * @param {boolean} visible
 */
export function show(node, visible) {
  if (node.hidden === visible) node.hidden = !visible;
}

/**
 * Look an element up by id, failing loudly when the page lacks it.
 * @param {string} id
 * @returns {HTMLElement}
 */
export function byId(id) {
  const node = document.getElementById(id);
  if (!node) throw new Error(`#${id} is missing from the page`);
  return node;
}

/**
 * A panel that says something went wrong, for views that cannot render.
 * @param {string} title
 * @param {string} message
 * @returns {HTMLElement}
 */
export function errorPanel(title, message) {
  return el(
    'section',
    { class: 'panel panel-error', attrs: { role: 'alert' } },
    el('h2', { text: title }),
    el('p', { text: message }),
  );
}

/**
 * Show `message` in `node`, or hide the node when the message is ''.
 * @param {HTMLElement} node
 * @param {string} message
 */
export function say(node, message) {
  setText(node, message);
  show(node, Boolean(message));
}

/**
 * What a view says when its snapshot fails (async.js `retried`).
 * @param {string} what e.g. 'the campaigns'
 * @param {{message?: string}} error
 * @param {boolean} retrying
 */
export function failedToLoad(what, error, retrying) {
  return `Could not load ${what}${retrying ? ' (trying again)' : ''}: ${error.message ?? error}`;
}

/**
 * The frame of a list view (campaigns, meetings): a section `#<id>` with its
 * title, an error line, an empty state and the list, appended to `root`.
 * @param {HTMLElement} root
 * @param {{id: string, title: string, emptyText: string, listClass: string}} options
 */
export function listView(root, { id, title, emptyText, listClass }) {
  const error = el('p', { class: 'view-error', attrs: { role: 'alert' }, hidden: true });
  const empty = el('p', { class: 'empty', attrs: { id: `${id}-empty` }, text: emptyText, hidden: true });
  const list = el('div', { class: listClass });
  const view = el(
    'section',
    { class: 'view', attrs: { id, 'aria-labelledby': `${id}-title` } },
    el('div', { class: 'view-head' }, el('h1', { attrs: { id: `${id}-title` }, text: title })),
    error,
    empty,
    list,
  );
  root.append(view);
  return { view, error, empty, list };
}
