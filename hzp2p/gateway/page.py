"""The page under `/`: the public dashboard (chain status, policy notices, epidemic figures).

Plain HTML and a few lines of JavaScript calling the public /v1 routes of this same
gateway (same origin, no CORS); no data is embedded in the page. Citizens' and
venues' functions need keys and signatures, so they live in apps using the API
(hzp2p.gateway.client, hzp2p.credentials.verify), not here.
"""

from __future__ import annotations

DASHBOARD_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width">
<title>hzp2p — public health ledger</title>
<style>
body{font-family:system-ui,sans-serif;margin:2rem;max-width:60rem;color:#222}
table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #ccc;padding:.25rem .6rem}
th{background:#f3f3f3}.muted{color:#777}section{margin-bottom:2rem}
</style></head><body>
<h1>Public health ledger</h1>
<p class="muted">Committed data from this institution's node. API: <a href="/docs">/docs</a>,
<a href="/openapi.json">/openapi.json</a>; verifiers download the <a href="/v1/trust-list">trust list</a>.</p>
<section><h2>Chain</h2><div id="status" class="muted">loading…</div></section>
<section><h2>Policy notices</h2><div id="notices" class="muted">loading…</div></section>
<section><h2>Epidemic figures</h2><div id="epi" class="muted">loading…</div></section>
<section><h2>Public data sets</h2><div id="datasets" class="muted">loading…</div></section>
<script>
function esc(s){return String(s).replace(/[&<>"']/g,c=>({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c]))}
function table(rows,cols){if(!rows.length)return '<span class="muted">none</span>';
 return '<table><tr>'+cols.map(c=>'<th>'+esc(c)+'</th>').join('')+'</tr>'+
 rows.map(r=>'<tr>'+cols.map(c=>'<td>'+esc(r[c]??'')+'</td>').join('')+'</tr>').join('')+'</table>'}
async function show(id,url,render){const el=document.getElementById(id);
 try{const r=await fetch(url);el.innerHTML=r.ok?render(await r.json()):'unavailable ('+r.status+')';el.className=''}
 catch(e){el.textContent='unavailable'}}
show('status','/v1/status',s=>table([{chain:s.chain_id,height:s.height,
 'last block':s.last_block_ms?new Date(s.last_block_ms).toISOString():'—',leader:s.leader_known?'known':'none'}],
 ['chain','height','last block','leader']));
show('notices','/v1/notices',n=>table(n,['effective_date','region','title','body']));
show('epi','/v1/epi/summary',e=>table(e.buckets,['region','metric','period','total','reports']));
show('datasets','/v1/datasets',d=>table(d,['dataset_id','version','content_hash']));
</script></body></html>"""
