// The public dashboard (`/`): chain health, epidemic figures as charts, notices, public
// data sets, institutions with their roles and voters, and a block explorer. Public
// routes only; nothing personal, nothing signed.
import { getJSON } from './http.js';
import { applyI18n, lang, setupPage, t } from './i18n.js';
import { $, announce, download, fill, fmtTime, h, short, table } from './util.js';

const NS = 'http://www.w3.org/2000/svg';
const RECENT_BLOCKS = 10;
const REFRESH_MS = 15_000; // chain health and the latest blocks follow the chain
let data = {};

function svg(tag, attrs, ...kids) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, String(v));
  e.append(...kids);
  return e;
}

/** A bar chart of one region's metric by period, with its numbers as text and a table twin. */
function chart(region, metric, rows) {
  const W = 320, H = 160, pad = 24, bw = Math.max(8, Math.min(40, (W - 2 * pad) / rows.length - 6));
  const max = Math.max(1, ...rows.map((r) => r.total));
  const label = t('dash.chart_label', { metric, region });
  const g = svg('svg', { viewBox: `0 0 ${W} ${H + 30}`, class: 'chart', role: 'img', 'aria-label': label });
  g.append(svg('line', { x1: pad, y1: H, x2: W - pad / 2, y2: H, class: 'axis' }));
  rows.forEach((r, i) => {
    const x = pad + i * (bw + 6);
    const bh = Math.round((r.total / max) * (H - 30));
    g.append(svg('rect', { x, y: H - bh, width: bw, height: bh, class: 'bar' }, svg('title', {}, `${r.period}: ${r.total}`)));
    g.append(svg('text', { x: x + bw / 2, y: H - bh - 4, 'text-anchor': 'middle' }, String(r.total)));
    g.append(svg('text', { x: x + bw / 2, y: H + 14, 'text-anchor': 'middle' }, r.period.length > 6 ? r.period.slice(-3) : r.period));
  });
  return h('figure', { class: 'card' },
    h('figcaption', {}, label),
    g,
    h('details', {}, h('summary', {}, t('dash.as_table')),
      table(rows, [[t('dash.period'), (r) => r.period], [t('dash.total'), (r) => r.total], [t('dash.reports'), (r) => r.reports]],
        label, t('common.none'))));
}

function renderEpi() {
  const e = data.epi;
  if (!e) return;
  const groups = new Map();
  for (const b of e.buckets) {
    const k = `${b.metric}\u0000${b.region}`;
    if (!groups.has(k)) groups.set(k, []);
    groups.get(k).push(b);
  }
  if (!groups.size) return fill('epi', h('p', { class: 'muted' }, t('dash.no_figures')));
  const cards = [...groups.entries()].sort().map(([k, rows]) => {
    const [metric, region] = k.split('\u0000');
    return chart(region, metric, rows.sort((a, b) => (a.period < b.period ? -1 : 1)));
  });
  fill('epi', h('p', { class: 'muted' }, t('dash.at_height', { height: e.height })), h('div', { class: 'cards' }, cards));
}

function renderChain() {
  const s = data.status;
  if (!s) return;
  const age = s.last_block_ms ? Math.max(0, Math.round((Date.now() - s.last_block_ms) / 1000)) : null;
  fill('chain', h('dl', { class: 'kv' },
    h('dt', {}, t('dash.chain_id')), h('dd', { class: 'mono' }, s.chain_id),
    h('dt', {}, t('dash.height')), h('dd', { id: 'height' }, String(s.height)),
    h('dt', {}, t('dash.last_block')), h('dd', {}, s.last_block_ms ? `${fmtTime(s.last_block_ms, lang)} (${t('dash.seconds_ago', { s: age })})` : '—'),
    h('dt', {}, t('dash.leader')), h('dd', {}, s.leader_known ? t('dash.leader_known', { id: s.leader_id ?? '?' }) : t('dash.leader_none')),
    h('dt', {}, t('dash.node')), h('dd', {}, s.node_reachable ? t('common.yes') : t('common.no')),
    h('dt', {}, t('dash.head')), h('dd', { class: 'mono' }, short(s.head_hash, 16))));
}

function renderNotices() {
  const n = data.notices;
  if (!n) return;
  if (!n.length) return fill('notices', h('p', { class: 'muted' }, t('common.none')));
  fill('notices', h('ul', {}, n.slice(0, 10).map((x) => h('li', {},
    h('strong', {}, x.title), ' ', h('span', { class: 'muted' }, `(${x.region}, ${t('dash.effective')} ${x.effective_date})`),
    h('p', {}, x.body)))));
}

function renderDatasets() {
  const d = data.datasets;
  if (!d) return;
  fill('datasets', table(d, [
    [t('dash.dataset'), (r) => r.dataset_id],
    [t('dash.version'), (r) => r.version],
    [t('dash.published'), (r) => fmtTime(r.timestamp_ms, lang)],
    [t('dash.content_hash'), (r) => h('span', { class: 'mono', title: r.content_hash }, short(r.content_hash, 16))],
    [t('dash.download'), (r) => r.metadata && typeof r.metadata.url === 'string' && /^https?:\/\//.test(r.metadata.url)
      ? h('a', { href: r.metadata.url, rel: 'noopener' }, t('dash.download_data'))
      : h('button', { type: 'button', class: 'secondary', onclick: () => download(`${r.dataset_id}-v${r.version}.json`, JSON.stringify(r, null, 2)) }, t('dash.download_meta'))],
  ], t('dash.datasets'), t('common.none')));
}

function renderMembers() {
  const tl = data.trust;
  if (!tl) return;
  fill('members',
    table(tl.members, [
      [t('dash.inst_id'), (m) => m.inst_id],
      [t('dash.inst_name'), (m) => m.name],
      [t('dash.roles'), (m) => m.roles.map((r) => t(`role.${r}`)).join(', ')],
      [t('dash.voter'), (m) => (m.voter ? t('common.yes') : t('common.no'))],
      [t('dash.active'), (m) => (m.active ? t('common.yes') : t('common.no'))],
    ], t('dash.members'), t('common.none')),
    h('p', {}, t('dash.voters', { list: tl.voters.join(', ') || '—' })),
    h('p', {}, t('dash.credential_keys', { n: tl.credential_keys.filter((k) => k.revoked_ms === null).length })));
}

function txRows(b) {
  return table(b.txs, [
    [t('dash.tx'), (x) => h('span', { class: 'mono', title: x.tx_hash }, short(x.tx_hash, 16))],
    [t('dash.tx_type'), (x) => x.type],
    [t('dash.verdict'), (x) => (x.status === 'committed' ? t('dash.committed') : `${t('dash.rejected')}: ${x.reason ?? ''}`)],
  ], t('dash.block_n', { height: b.height }), t('dash.no_txs'));
}

async function showBlock(height) {
  try {
    const b = await getJSON(`/v1/blocks/${height}`);
    fill('block', h('div', { class: 'card' },
      h('h3', {}, t('dash.block_n', { height: b.height })),
      h('dl', { class: 'kv' },
        h('dt', {}, t('dash.time')), h('dd', {}, fmtTime(b.timestamp_ms, lang)),
        h('dt', {}, t('dash.proposer')), h('dd', {}, String(b.proposer)),
        h('dt', {}, t('dash.hash')), h('dd', { class: 'mono' }, b.hash),
        h('dt', {}, t('dash.prev_hash')), h('dd', { class: 'mono' }, b.prev_hash),
        h('dt', {}, t('dash.merkle_root')), h('dd', { class: 'mono' }, b.merkle_root)),
      txRows(b)));
  } catch (e) {
    fill('block', h('p', { role: 'alert' }, e.message));
  }
}

function renderBlocks() {
  const bs = data.blocks;
  if (!bs) return;
  fill('blocks', table(bs, [
    [t('dash.height'), (b) => h('button', { type: 'button', class: 'secondary', onclick: () => showBlock(b.height) }, String(b.height))],
    [t('dash.time'), (b) => fmtTime(b.timestamp_ms, lang)],
    [t('dash.proposer'), (b) => b.proposer],
    [t('dash.txs'), (b) => b.txs.map((x) => `${x.type}${x.status === 'committed' ? '' : ` (${t('dash.rejected')})`}`).join(', ') || '—'],
  ], t('dash.recent_blocks'), t('dash.no_blocks')));
}

function renderAll() {
  renderChain(); renderEpi(); renderNotices(); renderDatasets(); renderMembers(); renderBlocks();
}

async function load(name, url, render, target) {
  try {
    data[name] = await getJSON(url);
    render();
  } catch (e) {
    fill(target, h('p', { role: 'alert' }, t('common.unavailable', { why: e.message })));
  }
}

async function loadBlocks() {
  const height = data.status ? data.status.height : 0;
  const hs = [];
  for (let x = height; x >= 1 && hs.length < RECENT_BLOCKS; x--) hs.push(x);
  try {
    data.blocks = await Promise.all(hs.map((x) => getJSON(`/v1/blocks/${x}`)));
    renderBlocks();
  } catch (e) {
    fill('blocks', h('p', { role: 'alert' }, t('common.unavailable', { why: e.message })));
  }
}

async function main() {
  setupPage(renderAll);
  $('block-form').addEventListener('submit', (ev) => {
    ev.preventDefault();
    showBlock(Number($('block-height').value));
  });
  await Promise.all([
    load('status', '/v1/status', renderChain, 'chain').then(loadBlocks),
    load('epi', '/v1/epi/summary', renderEpi, 'epi'),
    load('notices', '/v1/notices', renderNotices, 'notices'),
    load('datasets', '/v1/datasets', renderDatasets, 'datasets'),
    load('trust', '/v1/trust-list', renderMembers, 'members'),
  ]);
  document.body.dataset.ready = 'true';
  announce('');
  applyI18n();
  setInterval(async () => {
    const before = data.status ? data.status.height : -1;
    await load('status', '/v1/status', renderChain, 'chain');
    if (data.status && data.status.height !== before) await loadBlocks();
  }, REFRESH_MS);
}

main();
