/** Renders docs/errors.md from the error catalogue, so the page and the code cannot drift. */
import { ERROR_CATALOGUE, type ErrorSpec } from "./errors.js";

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
    "one entry per bad field (`field` uses dots and brackets: `filters.type`, `columns[2]`).",
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
  ].join("\n");
}
