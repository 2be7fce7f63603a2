/**
 * Operator scopes: what an operator key may do on the operator API (/admin/v1) and on the public API.
 * Kept apart from the tenant scopes (scopes.ts): no tenant key ever carries one, and no operator key
 * carries a tenant scope.
 * - `admin:read`: read tenants, plans, keys, exports of any tenant, the audit log, maintenance;
 * - `admin:write`: every operator write (each one lands in the audit log);
 * - `admin:act`: act as a tenant on the public API with `X-Exportd-Tenant: NAME`.
 */
export const OPERATOR_SCOPES = ["admin:read", "admin:write", "admin:act"] as const;
export type OperatorScope = (typeof OPERATOR_SCOPES)[number];

export function isOperatorScope(value: string): value is OperatorScope {
  return (OPERATOR_SCOPES as readonly string[]).includes(value);
}
