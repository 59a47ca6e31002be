import type { Problem } from "./types";

/** An API error: the problem+json body when the server sent one. */
export class ApiError extends Error {
  readonly status: number;
  readonly problem: Partial<Problem>;
  constructor(status: number, problem: Partial<Problem>) {
    super(problem.detail || problem.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

/** The organization and application every scoped request is sent for. */
export const scope: { orgId: string | null; appId: string | null } = { orgId: null, appId: null };

type Opts = {
  body?: unknown;
  form?: FormData;
  query?: Record<string, string | number | boolean | undefined | null>;
  noScope?: boolean;
  headers?: Record<string, string>;
  signal?: AbortSignal;
};

/** Called on 401 so the app can go back to sign-in. */
let onUnauthorized: () => void = () => {};
export function setUnauthorizedHandler(f: () => void) {
  onUnauthorized = f;
}

export function buildUrl(path: string, query?: Opts["query"]): string {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(query ?? {})) {
    if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  }
  const s = q.toString();
  return s ? `${path}?${s}` : path;
}

export async function request<T>(method: string, path: string, opts: Opts = {}): Promise<T> {
  const headers: Record<string, string> = { accept: "application/json", ...opts.headers };
  if (!opts.noScope) {
    if (scope.orgId) headers["X-Org-Id"] = scope.orgId;
    if (scope.appId) headers["X-App-Id"] = scope.appId;
  }
  let body: BodyInit | undefined;
  if (opts.form) body = opts.form;
  else if (opts.body !== undefined) {
    headers["content-type"] = "application/json";
    body = JSON.stringify(opts.body);
  }
  let res: Response;
  try {
    res = await fetch(buildUrl(path, opts.query), {
      method,
      headers,
      body,
      credentials: "same-origin",
      signal: opts.signal,
    });
  } catch (e) {
    if ((e as Error).name === "AbortError") throw e;
    throw new ApiError(0, { title: "Network error", detail: "The server could not be reached." });
  }
  if (res.status === 204) return undefined as T;
  const text = await res.text();
  let data: unknown = undefined;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (!res.ok) {
    const problem =
      data && typeof data === "object"
        ? (data as Partial<Problem>)
        : { title: res.statusText || `HTTP ${res.status}`, detail: typeof data === "string" ? data : "" };
    if (!problem.requestId) problem.requestId = res.headers.get("x-request-id") ?? undefined;
    if (res.status === 401 && !path.startsWith("/api/auth/")) onUnauthorized();
    throw new ApiError(res.status, problem);
  }
  return data as T;
}

export const api = {
  get: <T>(path: string, opts?: Opts) => request<T>("GET", path, opts),
  post: <T>(path: string, body?: unknown, opts?: Opts) => request<T>("POST", path, { ...opts, body: body ?? {} }),
  put: <T>(path: string, body?: unknown, opts?: Opts) => request<T>("PUT", path, { ...opts, body: body ?? {} }),
  patch: <T>(path: string, body?: unknown, opts?: Opts) => request<T>("PATCH", path, { ...opts, body: body ?? {} }),
  del: <T>(path: string, opts?: Opts) => request<T>("DELETE", path, opts),
  upload: <T>(path: string, form: FormData, opts?: Opts) => request<T>("POST", path, { ...opts, form }),
};

/** `@scope/name` → `/@scope/name` path segments (the scope keeps its `@`). */
export function agentPath(id: string): string {
  const [s, n] = id.split("/");
  return `${encodeURIComponent(s)}/${encodeURIComponent(n)}`;
}
