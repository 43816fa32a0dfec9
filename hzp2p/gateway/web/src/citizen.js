// The citizen's page (`/citizen`): her key (kept in this browser), her health code as a QR
// credential refreshed before it expires, her records decrypted here, who read them and
// why, her grants with revoke buttons, a grant form, and the receipts of what she signed.
// Every personal request is signed in the browser (api.js); the gateway renders nothing.
import sodium from 'libsodium-wrappers';
import { ApiError, getJSON, signed } from './api.js';
import { applyI18n, lang, setupPage, t } from './i18n.js';
import { createKey, forgetKey, fromSeed, KeyFormatError, keyFileText, loadKey, parseSeed, saveKey } from './keys.js';
import { qrSvg } from './qr.js';
import { openRecord, RecordCryptoError } from './records.js';
import { buildTx } from './tx.js';
import { $, announce, download, fill, fmtTime, h, hex, short, table } from './util.js';

const REFRESH_MARGIN_S = 60;
let key = null;
let chainId = null;
let members = new Map();
let refreshTimer = null;
const opened = new Map(); // record_id -> decrypted fields (this page view only)
let last = {};

const instName = (id) => (members.has(id) ? `${members.get(id).name} (${id})` : String(id ?? '—'));
const receiptsKey = () => `hzp2p.receipts.${key.pseudonym}`;
const loadReceipts = () => JSON.parse(localStorage.getItem(receiptsKey()) || '[]');
const saveReceipts = (rs) => localStorage.setItem(receiptsKey(), JSON.stringify(rs.slice(-50)));

function fail(e) {
  let msg = e.message;
  if (e instanceof ApiError) msg = t('common.api_error', { status: e.status, detail: e.message });
  else if (e instanceof KeyFormatError) msg = t('cit.key_bad');
  else if (e instanceof RecordCryptoError) msg = t('cit.decrypt_failed', { why: t(`crypto.${e.code}`) });
  announce(msg, 'error');
}

// ------------------------------------------------------------------ key

function renderKey() {
  $('key-none').hidden = !!key;
  $('key-have').hidden = !key;
  $('personal').hidden = !key;
  if (!key) return;
  $('pseudonym').textContent = key.pseudonym;
  $('public-key').textContent = hex(key.pk);
}

async function useKey(k) {
  key = k;
  opened.clear();
  last = {};
  renderKey();
  if (key) await loadPersonal();
}

function setupKey() {
  $('key-create').addEventListener('click', async () => {
    await useKey(await createKey());
    announce(t('cit.key_created'), 'ok');
  });
  const importText = async (text) => {
    try {
      const k = fromSeed(parseSeed(text));
      saveKey(k);
      await useKey(k);
      announce(t('cit.key_imported'), 'ok');
    } catch (e) {
      fail(e);
    }
  };
  $('key-file').addEventListener('change', async (ev) => {
    const f = ev.target.files[0];
    if (f) await importText(await f.text());
    ev.target.value = '';
  });
  $('key-paste-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    await importText($('key-paste').value);
    $('key-paste').value = '';
  });
  $('key-export').addEventListener('click', () => download(`hzp2p-${key.pseudonym.slice(0, 8)}.key`, keyFileText(key), 'text/plain'));
  $('key-qr').addEventListener('click', () => {
    const box = $('key-qr-box');
    const show = box.hidden;
    box.hidden = !show;
    $('key-qr').setAttribute('aria-expanded', String(show));
    fill(box, show ? [h('p', { class: 'warning' }, t('cit.key_qr_warning')), qrSvg(hex(key.seed), t('cit.key_qr_label'))] : []);
  });
  $('key-forget').addEventListener('click', async () => {
    if (!window.confirm(t('cit.key_forget_confirm'))) return;
    forgetKey();
    clearTimeout(refreshTimer);
    await useKey(null);
    announce(t('cit.key_forgotten'));
  });
}

// ------------------------------------------------------------------ personal data

function renderCode() {
  const c = last.code;
  if (!c) return;
  const parts = [
    h('div', { class: `colour ${c.colour}`, id: 'code-colour', dataset: { colour: c.colour } }, t(`colour.${c.colour}`)),
    h('dl', { class: 'kv' },
      h('dt', {}, t('cit.since')), h('dd', {}, fmtTime(c.since_ms, lang)),
      h('dt', {}, t('cit.why')), h('dd', {}, c.why || t('cit.why_default')),
      h('dt', {}, t('cit.source')), h('dd', {}, c.source)),
  ];
  if (c.credential) {
    parts.push(qrSvg(c.credential, t('cit.code_qr_label', { colour: t(`colour.${c.colour}`) })),
      h('p', {}, t('cit.valid_until', { when: fmtTime(c.credential_valid_until_s * 1000, lang) })),
      h('details', {}, h('summary', {}, t('cit.code_text')), h('p', { class: 'mono', id: 'credential' }, c.credential)));
  } else {
    parts.push(h('p', { class: 'warning' }, t('cit.no_credential', { why: c.credential_problem || '' })));
  }
  fill('code', parts);
}

async function loadCode() {
  clearTimeout(refreshTimer);
  try {
    last.code = await signed(key, 'GET', '/v1/me/health-code', { me: true });
    renderCode();
    const c = last.code;
    // refresh before it expires (a minute early), and at least every 10 minutes
    const inS = c.credential_valid_until_s ? c.credential_valid_until_s - Date.now() / 1000 - REFRESH_MARGIN_S : 600;
    refreshTimer = setTimeout(loadCode, Math.max(5, Math.min(600, inS)) * 1000);
  } catch (e) {
    fill('code', h('p', { role: 'alert' }, e.message));
    refreshTimer = setTimeout(loadCode, 30_000);
  }
}

function fieldList(fields) {
  return h('dl', { class: 'kv' }, Object.entries(fields).flatMap(([k, v]) => [
    h('dt', {}, k),
    h('dd', {}, v instanceof Uint8Array ? hex(v) : typeof v === 'object' && v !== null ? JSON.stringify(v) : String(v)),
  ]));
}

async function decrypt(recordId) {
  try {
    const view = await signed(key, 'GET', `/v1/me/records/${encodeURIComponent(recordId)}`, { me: true });
    await sodium.ready;
    opened.set(recordId, openRecord(view, key));
    renderRecords();
    announce(t('cit.decrypted', { id: recordId }), 'ok');
  } catch (e) {
    fail(e);
  }
}

function renderRecords() {
  const rs = last.records;
  if (!rs) return;
  if (!rs.length) return fill('records', h('p', { class: 'muted' }, t('cit.no_records')));
  fill('records', rs.map((r) => h('article', { class: 'record', dataset: { record: r.record_id } },
    h('h3', {}, `${t(`type.${r.type}`)} · ${r.record_id}`),
    h('p', { class: 'muted' }, t('cit.record_meta', { writer: instName(r.writer), when: fmtTime(r.timestamp_ms, lang), height: r.height })),
    r.erased ? h('p', {}, t('cit.erased'))
      : opened.has(r.record_id) ? fieldList(opened.get(r.record_id))
        : h('button', { type: 'button', onclick: () => decrypt(r.record_id) }, t('cit.decrypt', { id: r.record_id })))));
}

function renderLog() {
  const log = last.log;
  if (!log) return;
  fill('access-log', table(log, [
    [t('cit.when'), (e) => fmtTime(e.timestamp_ms, lang)],
    [t('cit.kind'), (e) => t(`access.${e.kind}`)],
    [t('cit.record'), (e) => `${e.record_id} (${t(`type.${e.record_type}`)})`],
    [t('cit.by'), (e) => instName(e.by)],
    [t('cit.to'), (e) => (e.grantee === null ? '—' : instName(e.grantee))],
    [t('cit.why_access'), (e) => e.purpose || e.reason || '—'],
  ], t('cit.access_log'), t('cit.no_access')));
}

function grantState(g) {
  if (g.revoked_ms !== null) return 'revoked';
  return g.expiry_ms <= Date.now() ? 'expired' : 'active';
}

function renderGrants() {
  const gs = last.grants;
  if (!gs) return;
  fill('grants', table(gs, [
    [t('cit.grant_id'), (g) => g.grant_id],
    [t('cit.grantee'), (g) => instName(g.grantee)],
    [t('cit.record_types'), (g) => g.record_types.map((x) => t(`type.${x}`)).join(', ')],
    [t('cit.purpose'), (g) => g.purpose],
    [t('cit.until'), (g) => fmtTime(g.expiry_ms, lang)],
    [t('cit.state'), (g) => t(`grant.${grantState(g)}`)],
    ['', (g) => (grantState(g) === 'active'
      ? h('button', { type: 'button', class: 'danger', dataset: { revoke: g.grant_id }, onclick: () => revoke(g.grant_id) }, t('cit.revoke', { id: g.grant_id }))
      : '')],
  ], t('cit.grants'), t('cit.no_grants')));
}

function renderReceipts() {
  if (!key) return;
  const rs = loadReceipts();
  fill('receipts', table(rs.slice().reverse(), [
    [t('cit.when'), (r) => fmtTime(r.at, lang)],
    [t('dash.tx_type'), (r) => r.type],
    [t('dash.tx'), (r) => h('span', { class: 'mono', title: r.tx_hash }, short(r.tx_hash, 16))],
    [t('dash.verdict'), (r) => (r.status === 'committed' ? t('cit.in_block', { height: r.height }) : `${r.status} ${r.reason ?? ''}`)],
    ['', (r) => h('button', { type: 'button', class: 'secondary', onclick: () => saveReceipt(r.tx_hash) }, t('cit.receipt_download'))],
  ], t('cit.receipts'), t('cit.no_receipts')));
}

async function saveReceipt(txHash) {
  try {
    const receipt = await signed(key, 'GET', `/v1/tx/${txHash}`);
    let proof = null;
    try {
      proof = await signed(key, 'GET', `/v1/tx/${txHash}/proof`);
    } catch (e) {
      if (!(e instanceof ApiError && (e.status === 404 || e.status === 405))) throw e;
    }
    download(`receipt-${txHash.slice(0, 12)}.json`, JSON.stringify({ receipt, proof }, null, 2));
  } catch (e) {
    fail(e);
  }
}

function renderGrantees() {
  const sel = $('grantee');
  const current = sel.value;
  sel.replaceChildren(...[...members.values()].filter((m) => m.active).map((m) =>
    h('option', { value: m.inst_id }, `${m.name} (${m.roles.map((r) => t(`role.${r}`)).join(', ')})`)));
  if (current) sel.value = current;
}

async function loadPersonal() {
  const k = key;
  const [records, log, grants] = await Promise.all([
    signed(k, 'GET', '/v1/me/records', { me: true }),
    signed(k, 'GET', '/v1/me/access-log', { me: true }),
    signed(k, 'GET', '/v1/me/grants', { me: true }),
    loadCode(),
  ].map((p) => p.catch((e) => { fail(e); return null; })));
  if (k !== key) return;
  Object.assign(last, { records, log, grants });
  renderRecords(); renderLog(); renderGrants(); renderReceipts();
  document.body.dataset.loaded = String(Date.now());
}

// ------------------------------------------------------------------ transactions

async function send(type, payload) {
  if (!chainId) chainId = (await getJSON('/v1/status')).chain_id;
  const tx = buildTx(key, chainId, type, payload);
  const receipt = await signed(key, 'POST', '/v1/tx', { json: { tx: tx.wire, wait_s: 10 } });
  const rs = loadReceipts();
  rs.push({ ...receipt, at: Date.now() });
  saveReceipts(rs);
  return receipt;
}

async function withBusy(button, fn) {
  if (button) button.disabled = true;
  try {
    await fn();
  } catch (e) {
    fail(e);
  } finally {
    if (button) button.disabled = false;
  }
}

async function revoke(grantId) {
  if (!window.confirm(t('cit.revoke_confirm', { id: grantId }))) return;
  const b = document.querySelector(`[data-revoke="${CSS.escape(grantId)}"]`);
  await withBusy(b, async () => {
    const r = await send('consent.revoke', { grant_id: grantId });
    announce(r.status === 'committed' ? t('cit.revoked', { id: grantId }) : t('cit.tx_refused', { reason: r.reason ?? r.status }),
      r.status === 'committed' ? 'ok' : 'error');
    await loadPersonal();
  });
}

function setupGrantForm() {
  $('grant-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const types = [...document.querySelectorAll('input[name="types"]:checked')].map((x) => x.value);
    if (!types.length) { announce(t('cit.pick_types'), 'error'); return; }
    const days = Number($('days').value);
    const grantId = `G-${Date.now().toString(36)}`;
    const payload = {
      grant_id: grantId,
      grantee: Number($('grantee').value),
      record_types: types,
      purpose: $('purpose').value.trim(),
      expiry_ms: Date.now() + days * 86_400_000,
    };
    await withBusy(ev.submitter || $('grant-form').querySelector('button'), async () => {
      const r = await send('consent.grant', payload);
      announce(r.status === 'committed' ? t('cit.granted', { id: grantId, name: instName(payload.grantee) }) : t('cit.tx_refused', { reason: r.reason ?? r.status }),
        r.status === 'committed' ? 'ok' : 'error');
      await loadPersonal();
    });
  });
}

async function main() {
  setupPage(() => { renderKey(); renderCode(); renderRecords(); renderLog(); renderGrants(); renderReceipts(); renderGrantees(); });
  setupKey();
  setupGrantForm();
  try {
    const tl = await getJSON('/v1/trust-list');
    chainId = tl.chain_id;
    members = new Map(tl.members.map((m) => [m.inst_id, m]));
    renderGrantees();
  } catch (e) {
    fail(e);
  }
  try {
    await useKey(await loadKey());
  } catch (e) {
    fail(e);
  }
  applyI18n();
  document.body.dataset.ready = 'true';
}

main();
