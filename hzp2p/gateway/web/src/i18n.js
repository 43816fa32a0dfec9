// Chinese and English text: one messages file per language (messages/*.json), a switch in
// every page's header, the choice kept in localStorage. Elements carry data-i18n="key"
// (text), data-i18n-label (aria-label) or data-i18n-placeholder.
import en from './messages/en.json';
import zh from './messages/zh.json';

const CATALOGS = { en, zh };
const STORE = 'hzp2p.lang';

function initial() {
  const saved = localStorage.getItem(STORE);
  if (saved && CATALOGS[saved]) return saved;
  const q = new URLSearchParams(location.search).get('lang');
  if (q && CATALOGS[q]) return q;
  return (navigator.language || 'en').toLowerCase().startsWith('zh') ? 'zh' : 'en';
}

export let lang = initial();

export function t(key, vars = {}) {
  let s = CATALOGS[lang][key] ?? CATALOGS.en[key] ?? key;
  for (const [k, v] of Object.entries(vars)) s = s.replaceAll(`{${k}}`, String(v));
  return s;
}

export function applyI18n(root = document) {
  document.documentElement.lang = lang === 'zh' ? 'zh-CN' : 'en';
  for (const e of root.querySelectorAll('[data-i18n]')) e.textContent = t(e.dataset.i18n);
  for (const e of root.querySelectorAll('[data-i18n-label]')) e.setAttribute('aria-label', t(e.dataset.i18nLabel));
  for (const e of root.querySelectorAll('[data-i18n-placeholder]')) e.setAttribute('placeholder', t(e.dataset.i18nPlaceholder));
  const title = document.body.dataset.title;
  if (title) document.title = `${t(title)} · ${t('app.name')}`;
}

/** Wire the language <select id="lang">; `rerender` redraws what the page built itself. */
export function setupPage(rerender) {
  const sel = document.getElementById('lang');
  if (sel) {
    sel.value = lang;
    sel.addEventListener('change', () => {
      lang = sel.value;
      localStorage.setItem(STORE, lang);
      applyI18n();
      rerender();
    });
  }
  const banner = document.getElementById('nojs');
  if (banner) banner.hidden = true;
  applyI18n();
}
