/**
 * API key scopes. A route declares the one it needs; a key without it gets 403 insufficient_scope.
 * Scopes are stored with each key: keys issued before `webhooks:read` / `webhooks:write` existed
 * keep exactly their scopes (rotate or issue a key to get them); a key created without `--scopes`
 * gets every scope, these included.
 */
export const SCOPES = [
  "exports:read",
  "exports:write",
  "exports:download",
  "datasets:read",
  "webhooks:read",
  "webhooks:write",
] as const;
export type Scope = (typeof SCOPES)[number];

export function isScope(value: string): value is Scope {
  return (SCOPES as readonly string[]).includes(value);
}
