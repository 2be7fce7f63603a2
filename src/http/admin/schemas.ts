/** Request and response schemas of the operator API (/admin/v1). */
import { Type } from "typebox";
import { EXPORT_STATUSES } from "../../domain/export.js";
import { SCOPES } from "../../domain/scopes.js";
import { Nullable, NullableTimestamp, Timestamp } from "../schemas.js";

const LIMIT = { minimum: 1, maximum: 1_000_000 };
const TENANT_NAME = Type.String({
  minLength: 1,
  maxLength: 100,
  pattern: "^[A-Za-z0-9][A-Za-z0-9._-]*$",
  description:
    "Letters, digits, `.`, `_` and `-`, starting with a letter or digit; as sent in X-Exportd-Tenant.",
});

export const LimitsSchema = Type.Object({
  max_running: Type.Integer({ description: "Exports of the tenant running at once." }),
  max_queued: Type.Integer({ description: "Exports waiting at once; past it creates answer 429." }),
  requests_per_minute: Type.Integer({ description: "API requests per minute, per key." }),
});

const OverridesInput = Type.Object(
  {
    max_running: Type.Optional(Nullable(Type.Integer(LIMIT))),
    max_queued: Type.Optional(Nullable(Type.Integer(LIMIT))),
    requests_per_minute: Type.Optional(Nullable(Type.Integer(LIMIT))),
  },
  {
    additionalProperties: false,
    description: "Per-tenant overrides of the plan's limits; null: as the plan says.",
  },
);

export const TenantSchema = Type.Object(
  {
    object: Type.Literal("tenant"),
    id: Type.String(),
    name: Type.String(),
    plan: Type.String(),
    status: Type.Enum(["active", "disabled"]),
    created_at: Timestamp,
    disabled_at: NullableTimestamp,
    limits: LimitsSchema,
    overrides: Type.Object({
      max_running: Nullable(Type.Integer()),
      max_queued: Nullable(Type.Integer()),
      requests_per_minute: Nullable(Type.Integer()),
    }),
  },
  { $id: "Tenant" },
);

export const TenantNameParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 200 }) });
export const KeyParams = Type.Object({
  name: Type.String({ minLength: 1, maxLength: 200 }),
  prefix: Type.String({ minLength: 1, maxLength: 40 }),
});
export const PlanNameParams = Type.Object({ name: Type.String({ minLength: 1, maxLength: 100 }) });
export const ExportIdParams = Type.Object({ id: Type.String({ maxLength: 64 }) });

const Page = { limit: Type.Optional(Type.Integer({ minimum: 1, maximum: 100, default: 20 })) };
const Cursor = Type.Optional(
  Type.String({ maxLength: 400, description: "`next_cursor` of the previous page." }),
);

export const PageQuery = Type.Object({ ...Page, cursor: Cursor }, { additionalProperties: false });

export const CreateTenantBody = Type.Object(
  {
    name: TENANT_NAME,
    plan: Type.Optional(Type.String({ maxLength: 100 })),
    limits: Type.Optional(OverridesInput),
  },
  { additionalProperties: false },
);
export const ChangeTenantBody = Type.Object(
  { plan: Type.Optional(Type.String({ maxLength: 100 })), limits: Type.Optional(OverridesInput) },
  { additionalProperties: false },
);

export const TenantListSchema = Type.Object({
  data: Type.Array(Type.Ref("Tenant")),
  next_cursor: Nullable(Type.String()),
});

export const DisableResponse = Type.Object({
  tenant: Type.Ref("Tenant"),
  canceled_exports: Type.Array(Type.String(), {
    description: "Ids of the queued and running exports canceled.",
  }),
});
export const DeleteResponse = Type.Object({
  object: Type.Literal("tenant_deleted"),
  name: Type.String(),
  deleted_exports: Type.Integer(),
  deleted_keys: Type.Integer(),
});

export const PlanSchema = Type.Object({
  object: Type.Literal("plan"),
  name: Type.String(),
  limits: LimitsSchema,
});
export const PlanListSchema = Type.Object({ data: Type.Array(PlanSchema) });
export const CreatePlanBody = Type.Object(
  {
    name: Type.String({ minLength: 1, maxLength: 100, pattern: "^[A-Za-z0-9][A-Za-z0-9._-]*$" }),
    limits: Type.Object(
      {
        max_running: Type.Integer(LIMIT),
        max_queued: Type.Integer(LIMIT),
        requests_per_minute: Type.Integer(LIMIT),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);
export const ChangePlanBody = Type.Object(
  {
    limits: Type.Object(
      {
        max_running: Type.Optional(Type.Integer(LIMIT)),
        max_queued: Type.Optional(Type.Integer(LIMIT)),
        requests_per_minute: Type.Optional(Type.Integer(LIMIT)),
      },
      { additionalProperties: false },
    ),
  },
  { additionalProperties: false },
);

const ApiKeyFields = {
  object: Type.Literal("api_key"),
  prefix: Type.String(),
  last4: Type.String(),
  scopes: Type.Array(Type.String()),
  created_at: Timestamp,
  last_used_at: NullableTimestamp,
  revoked_at: NullableTimestamp,
};
export const ApiKeySchema = Type.Object(ApiKeyFields);
export const ApiKeyListSchema = Type.Object({ data: Type.Array(ApiKeySchema) });
export const IssuedKeySchema = Type.Object({
  ...ApiKeyFields,
  key: Type.String({ description: "The key itself: shown this once, stored only as a hash." }),
});
export const CreateKeyBody = Type.Object(
  {
    scopes: Type.Optional(
      Type.Array(Type.Enum(SCOPES), {
        minItems: 1,
        uniqueItems: true,
        description: "Tenant scopes of the key; every scope when left out.",
      }),
    ),
  },
  { additionalProperties: false },
);

export const MaintenanceSchema = Type.Object({
  object: Type.Literal("maintenance"),
  enabled: Type.Boolean(),
  retry_after_seconds: Type.Integer(),
  message: Type.String(),
});
export const MaintenanceBody = Type.Object(
  {
    enabled: Type.Boolean(),
    retry_after_seconds: Type.Optional(Type.Integer({ minimum: 1, maximum: 86_400, default: 300 })),
    message: Type.Optional(Type.String({ maxLength: 500 })),
  },
  { additionalProperties: false },
);

export const AnyExportsQuery = Type.Object(
  {
    tenant: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    status: Type.Optional(Type.Enum(EXPORT_STATUSES)),
    dataset: Type.Optional(Type.String({ maxLength: 100 })),
    ...Page,
    cursor: Cursor,
  },
  { additionalProperties: false },
);
export const TenantExportSchema = Type.Object({
  tenant: Nullable(Type.String({ description: "The export's tenant; null once the tenant is gone." })),
  export: Type.Ref("Export"),
});
export const TenantExportListSchema = Type.Object({
  data: Type.Array(TenantExportSchema),
  next_cursor: Nullable(Type.String()),
});

export const AuditQuery = Type.Object(
  {
    tenant: Type.Optional(Type.String({ minLength: 1, maxLength: 200 })),
    action: Type.Optional(Type.String({ minLength: 1, maxLength: 100 })),
    ...Page,
    cursor: Cursor,
  },
  { additionalProperties: false },
);
export const AuditEntrySchema = Type.Object({
  object: Type.Literal("audit_entry"),
  id: Type.String(),
  at: Timestamp,
  actor: Type.String({ description: "`operator:<prefix>`, `bootstrap` or `cli:<user>`." }),
  action: Type.String({ description: "What was done, e.g. `tenant.disable`, `api_key.create`." }),
  tenant: Nullable(Type.String()),
  target: Type.String({ description: "What it was done to, e.g. `tenant:acme`, `api_key:<prefix>`." }),
  before: Type.Unknown({ description: "The state before (null for a create)." }),
  after: Type.Unknown({ description: "The state after (null when nothing remains)." }),
});
export const AuditListSchema = Type.Object({
  data: Type.Array(AuditEntrySchema),
  next_cursor: Nullable(Type.String()),
});
