/**
 * The create form: dataset, time range with its zone, filters, columns and format, the dataset's
 * limits and a dry run's estimate shown before anything is created (POST /v1/exports with
 * `dry_run`), then the create itself. Used whole on /console and compact in <exportd-export>.
 */
import { useEffect, useId, useMemo, useState } from "preact/hooks";
import { type ApiClient, type ApiError, asApiError, isAbort } from "../api.js";
import { formatBytes, formatCount } from "../format.js";
import { createBody, defaultRange, type FormState } from "../request.js";
import type { Dataset, DryRunResult, Export } from "../types.js";
import { ErrorNotice } from "./ErrorNotice.js";

/** The zones offered: UTC first, then every zone the browser knows. */
function timeZones(): string[] {
  const known = typeof Intl.supportedValuesOf === "function" ? Intl.supportedValuesOf("timeZone") : [];
  return ["UTC", ...known.filter((z) => z !== "UTC")];
}

function browserZone(zones: string[]): string {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  return zone && zones.includes(zone) ? zone : "UTC";
}

/** What the embedding page (or nothing) fixes in advance. */
export interface FormPreset {
  dataset?: string;
  from?: string;
  to?: string;
  timezone?: string;
  format?: string;
  columns?: string[];
  filters?: Record<string, string>;
}

function initialState(datasets: Dataset[], preset: FormPreset, zones: string[]): FormState {
  const dataset = datasets.find((d) => d.name === preset.dataset) ?? datasets[0];
  const range = defaultRange(Date.now());
  return {
    dataset: dataset?.name ?? "",
    from: preset.from ?? range.from,
    to: preset.to ?? range.to,
    timezone: preset.timezone ?? browserZone(zones),
    format: preset.format ?? dataset?.formats[0] ?? "csv",
    filters: preset.filters ?? {},
    columns: preset.columns ?? dataset?.columns.map((c) => c.name) ?? [],
  };
}

type Estimate =
  | { kind: "idle" }
  | { kind: "checking" }
  | { kind: "done"; result: DryRunResult }
  | { kind: "error"; error: ApiError };

export function ExportForm(props: {
  client: ApiClient;
  datasets: Dataset[];
  preset?: FormPreset;
  /** Compact: the dataset cannot be changed and filters and columns fold away. */
  compact?: boolean;
  submitLabel?: string;
  onCreated: (doc: Export) => void;
}) {
  const { client, datasets, compact = false } = props;
  const uid = useId();
  const zones = useMemo(timeZones, []);
  const [state, setState] = useState<FormState>(() => initialState(datasets, props.preset ?? {}, zones));
  const [estimate, setEstimate] = useState<Estimate>({ kind: "idle" });
  const [creating, setCreating] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const dataset = datasets.find((d) => d.name === state.dataset);
  const body = createBody(state, dataset);
  const bodyKey = JSON.stringify(body);

  // The dry run follows the form, 400 ms after the last change; a newer one aborts the older.
  useEffect(() => {
    if (!dataset || !state.from || !state.to) return;
    const controller = new AbortController();
    setEstimate({ kind: "checking" });
    const timer = setTimeout(async () => {
      try {
        const result = await client.dryRun(JSON.parse(bodyKey), controller.signal);
        setEstimate({ kind: "done", result });
      } catch (err) {
        if (!isAbort(err)) setEstimate({ kind: "error", error: asApiError(err) });
      }
    }, 400);
    return () => {
      clearTimeout(timer);
      controller.abort();
    };
  }, [bodyKey, client]);

  const update = (patch: Partial<FormState>) => {
    setError(null);
    setState((s) => ({ ...s, ...patch }));
  };
  const chooseDataset = (name: string) => {
    const next = datasets.find((d) => d.name === name);
    update({
      dataset: name,
      format: next?.formats.includes(state.format) ? state.format : (next?.formats[0] ?? state.format),
      columns: next?.columns.map((c) => c.name) ?? [],
      filters: {},
    });
  };
  const toggleColumn = (name: string, on: boolean) =>
    update({ columns: on ? [...state.columns, name] : state.columns.filter((c) => c !== name) });

  const submit = async (event: Event) => {
    event.preventDefault();
    setCreating(true);
    setError(null);
    try {
      props.onCreated(await client.create(body));
    } catch (err) {
      setError(asApiError(err));
    } finally {
      setCreating(false);
    }
  };

  const overLimit = estimate.kind === "done" && estimate.result.exceeds_limits;
  const filtersAndColumns = dataset && (
    <>
      {dataset.filters.length > 0 && (
        <fieldset class="filters">
          <legend>Filters</legend>
          {dataset.filters.map((f) => (
            <label key={f.name}>
              {f.name}
              <input
                type="text"
                name={`filter-${f.name}`}
                value={state.filters[f.name] ?? ""}
                onInput={(e) => update({ filters: { ...state.filters, [f.name]: e.currentTarget.value } })}
                aria-describedby={`${uid}-filter-${f.name}`}
              />
              <span class="hint" id={`${uid}-filter-${f.name}`}>
                {f.description} Several values: separate them with commas.
              </span>
            </label>
          ))}
        </fieldset>
      )}
      <fieldset class="columns">
        <legend>Columns</legend>
        <div class="checks">
          {dataset.columns.map((c) => (
            <label key={c.name} class="check" title={c.description}>
              <input
                type="checkbox"
                name="column"
                value={c.name}
                checked={state.columns.includes(c.name)}
                onChange={(e) => toggleColumn(c.name, e.currentTarget.checked)}
              />
              {c.name}
            </label>
          ))}
        </div>
      </fieldset>
    </>
  );

  return (
    <form class="export-form" onSubmit={submit} aria-describedby={`${uid}-limits`}>
      {!compact && (
        <label>
          Dataset
          <select name="dataset" value={state.dataset} onChange={(e) => chooseDataset(e.currentTarget.value)}>
            {datasets.map((d) => (
              <option key={d.name} value={d.name}>
                {d.name}
              </option>
            ))}
          </select>
        </label>
      )}
      {dataset && <p class="hint">{dataset.description}</p>}
      <fieldset class="range">
        <legend>Time range</legend>
        <div class="row">
          <label>
            From (inclusive)
            <input
              type="datetime-local"
              name="from"
              required
              value={state.from}
              onInput={(e) => update({ from: e.currentTarget.value })}
            />
          </label>
          <label>
            To (exclusive)
            <input
              type="datetime-local"
              name="to"
              required
              value={state.to}
              onInput={(e) => update({ to: e.currentTarget.value })}
            />
          </label>
          <label>
            Time zone
            <select
              name="timezone"
              value={state.timezone}
              onChange={(e) => update({ timezone: e.currentTarget.value })}
            >
              {zones.map((z) => (
                <option key={z} value={z}>
                  {z}
                </option>
              ))}
            </select>
          </label>
        </div>
      </fieldset>
      {compact ? (
        <details>
          <summary>Filters and columns</summary>
          {filtersAndColumns}
        </details>
      ) : (
        filtersAndColumns
      )}
      {dataset && dataset.formats.length > 1 && (
        <label>
          Format
          <select
            name="format"
            value={state.format}
            onChange={(e) => update({ format: e.currentTarget.value })}
          >
            {dataset.formats.map((f) => (
              <option key={f} value={f}>
                {f.toUpperCase()}
              </option>
            ))}
          </select>
        </label>
      )}
      <div class="limits" id={`${uid}-limits`} aria-live="polite">
        {dataset && (
          <p>
            Limits: at most {formatCount(dataset.limits.max_range_days)} days per export,{" "}
            {formatCount(dataset.limits.max_rows)} rows and {formatBytes(dataset.limits.max_bytes)} before
            compression.
          </p>
        )}
        {estimate.kind === "checking" && <p class="estimate">Checking the estimate…</p>}
        {estimate.kind === "done" && (
          <p
            class={overLimit ? "estimate over" : "estimate"}
            data-estimated-rows={estimate.result.estimated_rows ?? ""}
          >
            {estimate.result.estimated_rows === null
              ? "The number of rows cannot be estimated in advance."
              : `About ${formatCount(estimate.result.estimated_rows)} rows.`}
            {overLimit &&
              ` That is over the limit of ${formatCount(estimate.result.limits.max_rows)} rows: narrow the range or add filters.`}
          </p>
        )}
        {estimate.kind === "error" && <ErrorNotice error={estimate.error} />}
      </div>
      <button type="submit" disabled={creating || !dataset}>
        {creating ? "Creating…" : (props.submitLabel ?? "Create export")}
      </button>
      <ErrorNotice error={error} focus />
    </form>
  );
}
