/**
 * The create form's state and the POST /v1/exports body built from it. Dates stay local date-times
 * (`2026-11-01T00:00`, as <input type="datetime-local"> writes them) that the server reads in the
 * chosen zone, so the page does no zone arithmetic of its own.
 */
import type { CreateBody, Dataset } from "./types.js";

export interface FormState {
  dataset: string;
  from: string;
  to: string;
  timezone: string;
  format: string;
  /** Filter name → what was typed: one value, or several separated by commas. */
  filters: Record<string, string>;
  /** The chosen columns in the dataset's order; every column means "all" (no `columns` sent). */
  columns: string[];
}

/** Splits a filter's text on commas; blanks are dropped. */
export function filterValues(text: string): string[] {
  return text
    .split(",")
    .map((v) => v.trim())
    .filter((v) => v !== "");
}

/** The request body for the form: only what differs from the API's defaults besides the basics. */
export function createBody(state: FormState, dataset: Dataset | undefined): CreateBody {
  const body: CreateBody = {
    dataset: state.dataset,
    from: state.from,
    to: state.to,
    timezone: state.timezone,
    format: state.format,
  };
  const filters: Record<string, string | string[]> = {};
  for (const [name, text] of Object.entries(state.filters)) {
    const values = filterValues(text);
    if (values.length === 1) filters[name] = values[0]!;
    else if (values.length > 1) filters[name] = values;
  }
  if (Object.keys(filters).length > 0) body.filters = filters;
  const all = dataset?.columns.map((c) => c.name) ?? [];
  if (state.columns.length > 0 && state.columns.length < all.length) {
    body.columns = all.filter((c) => state.columns.includes(c));
  }
  return body;
}

/** A local date-time (minutes) `days` before `now`'s UTC midnight, and that midnight: a default range. */
export function defaultRange(now: number, days = 7): { from: string; to: string } {
  const midnight = new Date(now);
  midnight.setUTCHours(0, 0, 0, 0);
  const from = new Date(midnight.getTime() - days * 86_400_000);
  const local = (d: Date) => d.toISOString().slice(0, 16);
  return { from: local(from), to: local(midnight) };
}
