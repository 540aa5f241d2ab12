/**
 * The campaigns view (`#/campaigns`): each campaign's progress, counts and
 * per-contact outcomes, live from the organization stream's `campaign` topic.
 *
 * Campaign events carry no seq on that stream, so state is merged, never
 * replaced: every source (the REST snapshot, a live event) can only move a
 * campaign forward. A contact goes pending → in_progress → an outcome
 * (recorded once, PROTOCOL section 2), a campaign draft → running →
 * completed, and the counters by how far the campaign has got (below). A
 * snapshot that races an event cannot undo it, and an event seen twice
 * changes nothing, whatever order they arrive in.
 *
 * Events update the state at once; the DOM follows in one animation frame
 * (FrameBatcher) for everything that changed, so a burst of events costs one
 * layout, and the dirty sets stay bounded by what is on the page.
 */

import { coalesced, retried } from './async.js';
import { formatDuration } from './clock.js';
import { el, failedToLoad, listView, say, setData, setText, show } from './dom.js';
import { FrameBatcher } from './frame.js';
import { insertSorted } from './sorted.js';
import { CAMPAIGN_STATUSES, CONTACT_STATUSES, statusStep } from './vocab.js';

const CONTACT_PAGE = 1000;
/** Past this many pages a campaign's table says it shows only the first contacts. */
const MAX_CONTACT_PAGES = 10;
/** The newest campaigns whose contacts load at once (every running one does too). */
const EAGER = 3;

/**
 * How far counters have got: each contact change adds to it (pending →
 * in_progress +1, → an outcome +1 or +2), and adding contacts only raises
 * the total, so a later snapshot never compares lower than an earlier one.
 */
function progressKey(p) {
  return [2 * (p.completed_contacts ?? 0) + (p.in_progress_contacts ?? 0), p.total_contacts ?? 0];
}

function notBehind(next, current) {
  const [a, b] = [progressKey(next), progressKey(current)];
  return a[0] > b[0] || (a[0] === b[0] && a[1] >= b[1]);
}

function contactOf(data) {
  return {
    id: data.contact_id ?? data.id,
    phone_number: data.phone_number ?? '',
    name: data.name ?? null,
    status: data.status ?? data.outcome ?? 'pending',
    call_sid: data.call_sid ?? null,
    duration: data.duration ?? null,
    error: data.error ?? null,
  };
}

/**
 * Mount the view in `root`.
 * @param {HTMLElement} root
 * @param {import('./app.js').ViewContext} ctx
 * @returns {() => void} unmount
 */
export function mount(root, ctx) {
  const { view, error, empty, list } = listView(root, {
    id: 'campaigns',
    title: 'Campaigns',
    emptyText: 'No campaigns yet.',
    listClass: 'campaign-list',
  });

  /** @type {Map<number, any>} */
  const campaigns = new Map();
  const dirty = new Set();
  let alive = true;
  const frames = new FrameBatcher(flush);

  function schedule(campaign) {
    dirty.add(campaign);
    if (alive) frames.schedule();
  }

  // -- state ---------------------------------------------------------------

  function ensure(id) {
    let c = campaigns.get(id);
    if (c) return c;
    c = {
      id,
      name: `Campaign ${id}`,
      status: 'draft',
      progress: {},
      contacts: new Map(),
      changed: new Set(),
      loaded: 'none', // contacts: none | loading | loaded
      truncated: false,
      note: '',
      ui: null,
    };
    campaigns.set(id, c);
    return c;
  }

  function advanceStatus(c, status) {
    if (statusStep(CAMPAIGN_STATUSES, status, c.status) > 0) c.status = status;
  }

  function mergeProgress(c, counters) {
    if (counters && notBehind(counters, c.progress)) c.progress = { ...c.progress, ...counters };
  }

  function mergeContact(c, data) {
    // A table not loaded yet gets its contacts from REST when it opens.
    if (c.loaded === 'none' || !data) return;
    const next = contactOf(data);
    if (!Number.isInteger(next.id)) return;
    const current = c.contacts.get(next.id);
    if (current && statusStep(CONTACT_STATUSES, next.status, current.status) < 0) return;
    c.contacts.set(next.id, current ? { ...current, ...next, name: next.name ?? current.name } : next);
    c.changed.add(next.id);
  }

  function mergeCampaign(json) {
    const c = ensure(json.id);
    c.name = json.name ?? c.name;
    advanceStatus(c, json.status);
    mergeProgress(c, json.progress);
    schedule(c);
    return c;
  }

  function onEvent(message) {
    const id = message?.campaign_id;
    if (!Number.isInteger(id)) return;
    const known = campaigns.has(id);
    const c = ensure(id);
    // A new campaign's table fills from its events and then from REST (discover).
    if (!known) c.loaded = 'loading';
    const data = message.data ?? {};
    switch (message.type) {
      case 'progress':
        mergeProgress(c, data);
        mergeContact(c, data.latest_contact);
        if ((data.completed_contacts ?? 0) + (data.in_progress_contacts ?? 0) > 0) {
          advanceStatus(c, 'running');
        }
        // Adding contacts sends no contact event, only this progress: fetch the new ones.
        if (c.loaded === 'loaded' && !c.truncated && (c.progress.total_contacts ?? 0) > c.contacts.size) {
          void loadContacts(c);
        }
        break;
      case 'contact_update':
      case 'contact_completed':
        advanceStatus(c, 'running');
        mergeContact(c, data);
        break;
      case 'campaign_completed':
        mergeProgress(c, {
          ...data,
          pending_contacts: 0,
          in_progress_contacts: 0,
          completion_percentage: 100,
        });
        advanceStatus(c, 'completed');
        break;
      default:
        return;
    }
    schedule(c);
    if (!known) void discover(c);
  }

  /** A campaign first seen in an event: its name and contacts by REST. */
  async function discover(c) {
    try {
      mergeCampaign(await ctx.api.get(`/v1/campaigns/${c.id}`));
    } catch (err) {
      if (!alive) return;
      c.note = `Could not load this campaign: ${err.message}`;
      schedule(c);
      return;
    }
    await loadContacts(c);
  }

  /** Read the campaign's contacts (one read at a time; asked again meanwhile, once more after). */
  function loadContacts(c) {
    if (c.loaded === 'none') c.loaded = 'loading';
    c.reader ??= coalesced(() => readContacts(c));
    return c.reader();
  }

  async function readContacts(c) {
    let cursor = null;
    try {
      for (let page = 0; page < MAX_CONTACT_PAGES; page += 1) {
        const query = cursor === null ? '' : `&cursor=${encodeURIComponent(cursor)}`;
        const body = await ctx.api.get(`/v1/campaigns/${c.id}/contacts?limit=${CONTACT_PAGE}${query}`);
        if (!alive) return;
        for (const contact of body.contacts ?? []) mergeContact(c, contact);
        cursor = body.next_cursor ?? null;
        if (cursor === null) break;
      }
      c.truncated = cursor !== null;
      c.loaded = 'loaded';
      c.note = '';
    } catch (err) {
      if (!alive) return;
      c.note = `Could not load the contacts: ${err.message}`;
    }
    schedule(c);
  }

  /** The campaigns by REST: after every (re)connect, and again with backoff while it fails. */
  const snapshot = retried(
    async () => {
      const body = await ctx.api.get('/v1/campaigns');
      if (alive) mergeSnapshot(body);
    },
    {
      onError: (err, retrying) => say(error, failedToLoad('the campaigns', err, retrying)),
      onSuccess: () => say(error, ''),
    },
  );

  function mergeSnapshot(body) {
    const before = new Set(campaigns.keys());
    const listed = body.campaigns ?? [];
    const seen = new Set(listed.map((json) => json.id));
    for (const id of before) {
      if (!seen.has(id)) drop(id);
    }
    listed.forEach((json, index) => {
      const c = mergeCampaign(json);
      const eager = index < EAGER || c.status === 'running';
      if (c.loaded === 'none' && eager && c.ui) c.ui.details.open = true;
      if (c.loaded !== 'none' || eager) void loadContacts(c);
    });
    frames.schedule();
  }

  function drop(id) {
    const c = campaigns.get(id);
    campaigns.delete(id);
    dirty.delete(c);
    c?.ui?.card.remove();
  }

  // -- rendering -------------------------------------------------------------

  function build(c) {
    const name = el('h2', { class: 'campaign-name' });
    const status = el('span', { class: 'campaign-status badge' });
    const progress = el('progress', { attrs: { max: '1', value: '0' } });
    const percent = el('span', { class: 'percent' });
    const counts = el('dl', { class: 'counts' });
    const fields = {};
    for (const [key, label] of [
      ['completed', 'Completed'],
      ['successful', 'Successful'],
      ['failed', 'Failed'],
      ['rate', 'Success rate'],
    ]) {
      fields[key] = el('dd', { class: key });
      counts.append(el('div', {}, el('dt', { text: label }), fields[key]));
    }
    const summary = el('summary', { text: 'Contacts' });
    const tbody = el('tbody');
    const head = el('tr');
    for (const label of ['Contact', 'Phone', 'Outcome', 'Duration', 'Call']) {
      head.append(el('th', { text: label, attrs: { scope: 'col' } }));
    }
    const table = el('table', { class: 'contacts' }, el('thead', {}, head), tbody);
    const note = el('p', { class: 'note', hidden: true });
    const details = /** @type {HTMLDetailsElement} */ (el('details', { class: 'contacts-box' }, summary, table, note));
    details.open = c.loaded !== 'none';
    details.addEventListener('toggle', () => {
      if (details.open && c.loaded === 'none') void loadContacts(c);
    });
    const card = el(
      'article',
      { class: 'campaign', attrs: { 'data-campaign-id': String(c.id) } },
      el('header', {}, name, status),
      el('div', { class: 'bar' }, progress, percent),
      counts,
      details,
    );
    c.ui = { card, name, status, progress, percent, counts, fields, summary, tbody, note, details };
    c.ui.rows = new Map(); // contact id → its row
    c.ui.order = []; // the rows' contact ids, ascending
    // Newest (highest id) first.
    const cards = /** @type {HTMLElement[]} */ ([...list.children]);
    const next = cards.find((node) => Number(node.dataset.campaignId) < c.id);
    list.insertBefore(card, next ?? null);
  }

  function render(c) {
    if (!c.ui) build(c);
    const ui = c.ui;
    const p = c.progress;
    const total = p.total_contacts ?? 0;
    const completed = p.completed_contacts ?? 0;
    setText(ui.name, c.name);
    setText(ui.status, c.status);
    setData(ui.status, 'status', c.status);
    setData(ui.card, 'status', c.status);
    ui.progress.max = Math.max(total, 1);
    ui.progress.value = completed;
    const percent = total ? Math.round((completed / total) * 1000) / 10 : 0;
    ui.progress.setAttribute('aria-label', `${completed} of ${total} contacts completed`);
    setText(ui.percent, `${completed} / ${total} · ${percent}%`);
    const rate = p.success_rate ?? 0;
    setText(ui.fields.completed, completed);
    setText(ui.fields.successful, p.successful_contacts ?? 0);
    setText(ui.fields.failed, p.failed_contacts ?? 0);
    setText(ui.fields.rate, `${rate}%`);
    setData(ui.counts, 'completed', completed);
    setData(ui.counts, 'successful', p.successful_contacts ?? 0);
    setData(ui.counts, 'failed', p.failed_contacts ?? 0);
    setData(ui.counts, 'successRate', rate);
    setText(ui.summary, `Contacts (${total})`);
    const note = c.note || (c.truncated ? `Showing the first ${c.contacts.size} contacts.` : '');
    setText(ui.note, note);
    show(ui.note, Boolean(note));
    for (const id of c.changed) renderContact(c, c.contacts.get(id));
    c.changed.clear();
  }

  function renderContact(c, contact) {
    const ui = c.ui;
    let row = ui.rows.get(contact.id);
    if (!row) {
      row = el(
        'tr',
        { attrs: { 'data-contact-id': String(contact.id) } },
        el('td', { class: 'name' }),
        el('td', { class: 'phone' }),
        el('td', { class: 'outcome' }, el('span', { class: 'badge' })),
        el('td', { class: 'duration' }),
        el('td', { class: 'call' }, el('a')),
      );
      ui.rows.set(contact.id, row);
      // Rows stay in contact id order (REST pages come in it; events may not).
      insertSorted(ui.tbody, ui.order, contact.id, row);
    }
    const [name, phone, outcome, duration, call] = row.children;
    setText(name, contact.name ?? '—');
    setText(phone, contact.phone_number);
    setText(outcome.firstChild, contact.status);
    setData(outcome.firstChild, 'status', contact.status);
    setData(outcome, 'outcome', contact.status);
    setData(row, 'status', contact.status);
    if (contact.error) outcome.title = contact.error;
    setText(duration, contact.duration === null ? '' : formatDuration(contact.duration));
    const link = call.firstChild;
    if (contact.call_sid) {
      link.href = `#/calls/${encodeURIComponent(contact.call_sid)}`;
      setText(link, contact.call_sid);
    }
  }

  function flush() {
    for (const c of dirty) {
      if (campaigns.get(c.id) === c) render(c);
    }
    dirty.clear();
    show(empty, campaigns.size === 0);
  }

  const offEvents = ctx.events.on('campaign', onEvent);
  const offResync = ctx.onResync(() => void snapshot.run());
  // Not live yet: the stream's first resync loads it (loading now as well would load it twice).
  if (ctx.isLive()) void snapshot.run();

  return function unmount() {
    alive = false;
    snapshot.dispose();
    offEvents();
    offResync();
    frames.dispose();
    view.remove();
  };
}
