/** Renders docs/errors.md from the error catalogue, so the page and the code cannot drift. */
import { DETAIL_CODES, ERROR_CATALOGUE, type ErrorSpec } from "./errors.js";
import { EXPORT_STATUSES } from "./export.js";

export function renderErrorsDoc(): string {
  const entries = Object.entries(ERROR_CATALOGUE) as [string, ErrorSpec][];
  const row = ([code, spec]: [string, ErrorSpec]) =>
    `| \`${code}\` | ${spec.status ?? "—"} | ${spec.retryable ? "yes" : "no"} | ${spec.when} |`;
  return [
    "# Error codes",
    "",
    "<!-- Generated from src/domain/errors.ts by `npm run docs:errors`. Do not edit by hand. -->",
    "",
    "Every error answer has the same envelope, and the request id is also in the `X-Request-Id` header:",
    "",
    "```json",
    '{"error": {"code": "export_not_ready", "message": "…", "request_id": "req_…",',
    '           "details": [{"field": "status", "code": "running", "message": "…"}]}}',
    "```",
    "",
    "`code` is stable and safe to branch on; `message` is for people and may change. `details` lists",
    "one entry per bad field (`field` uses dots and brackets: `filters.type`, `columns[2]`), the first",
    "100 at most: a request with more problems than that gets the first 100.",
    "",
    "## Request errors",
    "",
    "| code | HTTP | retry? | when |",
    "|---|---|---|---|",
    ...entries.filter(([, s]) => s.status !== null).map(row),
    "",
    "## Export errors",
    "",
    "A failed export carries `error: {code, message, retryable}` in its status. `retryable: false` means",
    "the same export will never succeed; `true` means exportd already retried and a new export may work.",
    "",
    "| code | HTTP | retry? | when |",
    "|---|---|---|---|",
    ...entries.filter(([, s]) => s.status === null).map(row),
    "",
    "## Detail codes",
    "",
    "The `code` of each `details` entry says why that one field is wrong. Detail codes never reuse a",
    "code of the tables above.",
    "",
    "| detail code | when |",
    "|---|---|",
    ...Object.entries(DETAIL_CODES).map(([code, when]) => `| \`${code}\` | ${when} |`),
    `| ${EXPORT_STATUSES.map((s) => `\`${s}\``).join(", ")} | On \`export_not_ready\` and \`not_cancellable\`: the export's current status (field \`status\`). |`,
    "",
  ].join("\n");
}
