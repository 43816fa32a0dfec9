// The venue's page (`/venue`): a visitor's code, pasted or scanned with the camera, checked
// in this browser against the trust list (downloaded from /v1/trust-list and kept for a
// day, so checks go on offline); shows colour and validity in words as well as colour.
import { getJSON } from './http.js';
import { applyI18n, lang, setupPage, t } from './i18n.js';
import { loadTrustList, MAX_TRUST_AGE_S, verifyCredential } from './credential.js';
import { $, announce, fill, fmtTime, h, short } from './util.js';

const STORE = 'hzp2p.trust-list';
let trustDoc = null;
let lastResult = null;
let stream = null;

function renderTrust() {
  if (!trustDoc) return;
  const age = Math.round((Date.now() - trustDoc.generated_ms) / 1000);
  fill('trust', h('p', {}, t('ven.trust_state', {
    chain: trustDoc.chain_id, height: trustDoc.height, when: fmtTime(trustDoc.generated_ms, lang),
    keys: trustDoc.credential_keys.length, minutes: Math.round(age / 60),
  })));
}

async function refreshTrust() {
  try {
    trustDoc = await getJSON('/v1/trust-list');
    localStorage.setItem(STORE, JSON.stringify(trustDoc));
    renderTrust();
  } catch (e) {
    const saved = localStorage.getItem(STORE);
    if (saved) {
      trustDoc = JSON.parse(saved);
      renderTrust();
      announce(t('ven.trust_offline'), 'error');
    } else {
      fill('trust', h('p', { role: 'alert' }, t('common.unavailable', { why: e.message })));
    }
  }
}

function problemText(p) {
  return t(`problem.${p.code}`, p);
}

function renderResult() {
  const r = lastResult;
  if (!r) return;
  const ok = r.ok;
  const head = ok
    ? h('div', { class: `colour ${r.colour}`, id: 'verdict', dataset: { ok: 'true', colour: r.colour } },
      `${t(`colour.${r.colour}`)} · ${t('ven.valid')}`)
    : h('div', { class: 'colour invalid', id: 'verdict', dataset: { ok: 'false', colour: r.colour || '' } },
      `${t('ven.invalid')}${r.colour ? ` (${t(`colour.${r.colour}`)})` : ''}`);
  const details = r.issuer === undefined ? [] : [h('dl', { class: 'kv' },
    h('dt', {}, t('ven.issuer')), h('dd', {}, `${r.issuerName ?? '?'} (${r.issuer})`),
    h('dt', {}, t('ven.subject')), h('dd', { class: 'mono' }, short(r.subject, 12)),
    h('dt', {}, t('ven.valid_until')), h('dd', {}, fmtTime(r.validUntilS * 1000, lang)),
    h('dt', {}, t('ven.colour_since')), h('dd', {}, fmtTime(r.sinceMs, lang)))];
  fill('result', head, details, r.problems.length ? h('ul', { id: 'problems' }, r.problems.map((p) => h('li', {}, problemText(p)))) : null);
}

async function check(text) {
  if (!trustDoc) await refreshTrust();
  if (!trustDoc) return;
  if ((Date.now() - trustDoc.generated_ms) / 1000 > MAX_TRUST_AGE_S) await refreshTrust();
  lastResult = await verifyCredential(text, loadTrustList(trustDoc), Date.now() / 1000);
  renderResult();
  $('result').focus?.();
}

async function stopCamera() {
  if (stream) for (const tr of stream.getTracks()) tr.stop();
  stream = null;
  $('camera').hidden = true;
  $('scan').textContent = t('ven.scan');
}

async function scan() {
  if (stream) return stopCamera();
  if (!navigator.mediaDevices?.getUserMedia) { announce(t('ven.no_camera'), 'error'); return; }
  try {
    stream = await navigator.mediaDevices.getUserMedia({ video: { facingMode: 'environment' } });
  } catch {
    announce(t('ven.no_camera'), 'error');
    return;
  }
  const video = $('camera');
  video.srcObject = stream;
  video.hidden = false;
  $('scan').textContent = t('ven.stop_scan');
  await video.play();
  const detector = 'BarcodeDetector' in window ? new window.BarcodeDetector({ formats: ['qr_code'] }) : null;
  const jsQR = detector ? null : (await import('jsqr')).default;  // loaded only when needed
  const canvas = document.createElement('canvas');
  const ctx = canvas.getContext('2d', { willReadFrequently: true });
  const tick = async () => {
    if (!stream) return;
    let text = null;
    if (video.videoWidth) {
      if (detector) {
        const codes = await detector.detect(video);
        text = codes[0]?.rawValue ?? null;
      } else {
        canvas.width = video.videoWidth;
        canvas.height = video.videoHeight;
        ctx.drawImage(video, 0, 0);
        const found = jsQR(ctx.getImageData(0, 0, canvas.width, canvas.height).data, canvas.width, canvas.height);
        text = found?.data ?? null;
      }
    }
    if (text) {
      $('code-text').value = text;
      await stopCamera();
      await check(text);
    } else {
      requestAnimationFrame(tick);
    }
  };
  requestAnimationFrame(tick);
}

async function main() {
  setupPage(() => { renderTrust(); renderResult(); });
  $('result').setAttribute('tabindex', '-1');
  $('verify-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    await check($('code-text').value);
  });
  $('scan').addEventListener('click', scan);
  $('trust-refresh').addEventListener('click', refreshTrust);
  const saved = localStorage.getItem(STORE);
  if (saved) { trustDoc = JSON.parse(saved); renderTrust(); }
  await refreshTrust();
  applyI18n();
  document.body.dataset.ready = 'true';
}

main();
