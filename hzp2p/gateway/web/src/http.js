// Public GETs and the gateway's problem+json errors (no crypto: the dashboard loads only this).

export class ApiError extends Error {
  constructor(status, problem) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

export async function check(r) {
  if (r.ok) return r.json();
  let p = {};
  try { p = await r.json(); } catch { /* not JSON */ }
  throw new ApiError(r.status, p);
}

export async function getJSON(url) {
  return check(await fetch(url, { headers: { accept: 'application/json' } }));
}
