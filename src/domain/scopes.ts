/** API key scopes. A route declares the one it needs; a key without it gets 403 insufficient_scope. */
export const SCOPES = ["exports:read", "exports:write", "exports:download", "datasets:read"] as const;
export type Scope = (typeof SCOPES)[number];

export function isScope(value: string): value is Scope {
  return (SCOPES as readonly string[]).includes(value);
}
