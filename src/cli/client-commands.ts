/**
 * The commands for people who script exports, talking to a running exportd over HTTP through the
 * typed client (@exportd/client): `exportd export …` creates an export and may wait for it and
 * download its parts; `exportd exports get|list|cancel|wait|download` work on existing ones.
 * Progress goes to stderr (a bar with rows, percent and ETA on a TTY, plain lines otherwise);
 * results to stdout (`--json`: one JSON document). Exit codes: see EXIT and docs/client.md.
 */
import { parseArgs } from "node:util";
import {
  ChecksumMismatchError,
  type CreateExportRequest,
  type Export,
  ExportdAbortError,
  ExportdApiError,
  ExportdClient,
  ExportdNetworkError,
} from "@exportd/client";
import { type DownloadedPart, downloadAll } from "@exportd/client/node";
import { isFinal, STATUS } from "../domain/export.js";

/** The exit codes of the client commands (documented in docs/client.md and the usage text). */
export const EXIT = {
  ok: 0,
  /** The export ended failed, canceled or expired. */
  exportNotSucceeded: 1,
  usage: 2,
  /** The server could not be reached, or answered 5xx or 429 after the retries. */
  network: 3,
  /** A downloaded part's SHA-256 did not match (the partial file was deleted). */
  checksum: 4,
  /** The API refused the request (4xx: invalid request, unauthorized, missing scope, not found…). */
  refused: 5,
  /** Ctrl-C: the export keeps running (or was canceled with --cancel-on-interrupt). */
  interrupted: 130,
} as const;

export const CLIENT_USAGE = `Client commands (talk to a running exportd; server from --url or EXPORTD_URL, key from --key or EXPORTD_API_KEY, or --token):
  Every command: [--url URL] [--key KEY | --token TOKEN] [--json] [--retries N (after 429/503 or a lost connection; default 4)]
  export --dataset D --from F --to T [--filter k=v …] [--columns a,b] [--format csv|jsonl] [--tz ZONE]
         [--wait] [--download DIR] [--json] [--cancel-on-interrupt]
                                             Create an export; --wait follows its progress, --download DIR
                                             (implies --wait) saves every part, resumed and SHA-256-verified
  exports get ID | list [--status S] [--dataset D] [--limit N] | cancel ID
  exports wait ID [--download DIR]           Follow an export to its end (and download it)
  exports download ID --dir DIR              Download a succeeded export's parts

Exit codes: 0 done, 1 export failed/canceled/expired, 2 usage, 3 network or server error,
            4 checksum mismatch, 5 request refused by the API, 130 interrupted (export left running).`;

/** A wrong command line: exit 2 with the usage text. */
class ClientUsageError extends Error {}

const COMMON = {
  url: { type: "string" },
  key: { type: "string" },
  token: { type: "string" },
  json: { type: "boolean" },
  retries: { type: "string" },
} as const;

interface Output {
  json: boolean;
  tty: boolean;
}

function clientFrom(values: { url?: string; key?: string; token?: string; retries?: string }): ExportdClient {
  const baseUrl = values.url ?? process.env.EXPORTD_URL ?? "http://localhost:8080";
  const token = values.token ?? process.env.EXPORTD_TOKEN;
  const apiKey = values.key ?? process.env.EXPORTD_API_KEY;
  if (!token && !apiKey) throw new ClientUsageError("No API key: pass --key or set EXPORTD_API_KEY.");
  try {
    new URL(baseUrl);
  } catch {
    throw new ClientUsageError(`--url ${baseUrl} is not a URL.`);
  }
  const maxRetries = values.retries === undefined ? 4 : Number(values.retries);
  if (!Number.isInteger(maxRetries) || maxRetries < 0 || maxRetries > 20)
    throw new ClientUsageError("--retries must be an integer from 0 to 20.");
  return new ExportdClient({ baseUrl, apiKey, token, maxRetries });
}

/** `k=v` pairs into filters; a name given twice becomes a list. */
function parseFilters(pairs: string[]): Record<string, string | string[]> {
  const filters: Record<string, string | string[]> = {};
  for (const pair of pairs) {
    const at = pair.indexOf("=");
    if (at <= 0) throw new ClientUsageError(`--filter ${pair}: expected name=value.`);
    const name = pair.slice(0, at);
    const value = pair.slice(at + 1);
    const seen = filters[name];
    filters[name] = seen === undefined ? value : [...(Array.isArray(seen) ? seen : [seen]), value];
  }
  return filters;
}

const numberFormat = new Intl.NumberFormat("en-US");

function formatDuration(seconds: number): string {
  const s = Math.max(0, Math.round(seconds));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const rest = String(s % 60).padStart(2, "0");
  return h > 0 ? `${h}:${String(m).padStart(2, "0")}:${rest}` : `${m}:${rest}`;
}

/**
 * Progress on stderr: a bar redrawn in place on a TTY, one line per change otherwise, nothing with
 * --json. The ETA is the percent left at the pace seen since this view first saw the export running.
 */
class ProgressView {
  /** When this view first saw the export running, and its percent then (a resumed wait starts midway). */
  private first: { at: number; percent: number } | null = null;
  private drawn = false;

  constructor(private readonly out: Output) {}

  update(exp: Export): void {
    if (this.out.json) return;
    const { percent, rows, estimated_rows } = exp.progress;
    if (exp.status === STATUS.running && this.first === null) this.first = { at: Date.now(), percent };
    let eta = "";
    if (this.first !== null && percent > this.first.percent && percent < 100) {
      const rate = (percent - this.first.percent) / ((Date.now() - this.first.at) / 1000);
      eta = ` ETA ${formatDuration((100 - percent) / rate)}`;
    }
    const of = estimated_rows === null ? "" : ` of ~${numberFormat.format(estimated_rows)}`;
    const queue = exp.queue_position === null ? "" : ` (place ${exp.queue_position} in the queue)`;
    const text = `${exp.status}${queue} ${percent.toFixed(1)}% ${numberFormat.format(rows)}${of} rows${eta}`;
    if (this.out.tty) {
      const width = 24;
      const filled = Math.round((percent / 100) * width);
      process.stderr.write(`\r\x1b[2K[${"#".repeat(filled)}${"-".repeat(width - filled)}] ${text}`);
      this.drawn = true;
    } else {
      process.stderr.write(`${text}\n`);
    }
  }

  bytes(written: number, total: number, name: string): void {
    if (this.out.json || !this.out.tty) return;
    const percent = total === 0 ? 100 : (written / total) * 100;
    process.stderr.write(
      `\r\x1b[2Kdownloading ${name} ${percent.toFixed(0)}% ${numberFormat.format(written)} of ${numberFormat.format(total)} bytes`,
    );
    this.drawn = true;
  }

  /** Ends the redrawn line so that what follows starts on its own. */
  done(): void {
    if (this.drawn) process.stderr.write("\n");
    this.drawn = false;
  }
}

/**
 * Follows `id` to its end and, when it succeeded and `dir` is given, downloads it. Ctrl-C stops
 * the waiting (or the download), leaves the export running unless `cancelOnInterrupt`, and prints
 * how to pick it up again.
 */
async function follow(
  client: ExportdClient,
  id: string,
  options: {
    dir: string | undefined;
    wait: boolean;
    cancelOnInterrupt: boolean;
    out: Output;
    first?: Export;
  },
): Promise<number> {
  const { out, dir } = options;
  const view = new ProgressView(out);
  const controller = new AbortController();
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
    controller.abort();
  };
  process.on("SIGINT", onSigint);
  let exp = options.first ?? null;
  let files: DownloadedPart[] = [];
  try {
    if (options.wait) {
      exp = await client.waitForExport(id, { signal: controller.signal, onProgress: (e) => view.update(e) });
      view.done();
    }
    exp ??= await client.getExport(id, { signal: controller.signal });
    if (exp.status === STATUS.succeeded && dir !== undefined) {
      files = await downloadAll(client, exp, dir, {
        signal: controller.signal,
        onBytes: (written, total, part) => view.bytes(written, total, part.filename),
      });
      view.done();
    }
  } catch (err) {
    view.done();
    if (!(err instanceof ExportdAbortError) || !interrupted) throw err;
    if (options.cancelOnInterrupt) {
      const canceled = await client.cancelExport(id).catch((e: unknown) => e as Error);
      if (canceled instanceof Error)
        process.stderr.write(`Could not cancel export ${id}: ${canceled.message}\n`);
      else process.stderr.write(`Interrupted: export ${id} is ${canceled.status}.\n`);
    } else {
      const resume = `exportd exports wait ${id}${dir === undefined ? "" : ` --download ${dir}`}`;
      process.stderr.write(`Interrupted: export ${id} keeps running. Pick it up again with:\n  ${resume}\n`);
    }
    return EXIT.interrupted;
  } finally {
    process.off("SIGINT", onSigint);
  }
  if (out.json) {
    process.stdout.write(
      `${JSON.stringify({ export: exp, files: files.map((f) => ({ path: f.path, bytes: f.bytes, fetched: f.fetched })) })}\n`,
    );
  } else {
    process.stdout.write(`${summary(exp)}\n`);
    for (const f of files)
      process.stdout.write(`${f.path}\t${f.bytes} bytes${f.skipped ? " (already here)" : ""}\n`);
  }
  // Without --wait, a queued or running export is a success of the command.
  if (exp.status === STATUS.succeeded || (!options.wait && !isFinal(exp.status))) return EXIT.ok;
  return EXIT.exportNotSucceeded;
}

function summary(exp: Export): string {
  const base = `${exp.id}\t${exp.status}\t${numberFormat.format(exp.progress.rows)} rows\t${exp.parts.length} part(s)`;
  return exp.error ? `${base}\t${exp.error.code}: ${exp.error.message}` : base;
}

async function exportCommand(args: string[], tty: boolean): Promise<number> {
  const { values } = parseArgs({
    args,
    options: {
      ...COMMON,
      dataset: { type: "string" },
      from: { type: "string" },
      to: { type: "string" },
      filter: { type: "string", multiple: true },
      columns: { type: "string" },
      format: { type: "string" },
      tz: { type: "string" },
      wait: { type: "boolean" },
      download: { type: "string" },
      "cancel-on-interrupt": { type: "boolean" },
    },
  });
  for (const name of ["dataset", "from", "to"] as const) {
    if (!values[name]) throw new ClientUsageError(`--${name} is required.`);
  }
  if (values.format !== undefined && values.format !== "csv" && values.format !== "jsonl")
    throw new ClientUsageError("--format must be csv or jsonl.");
  const request: CreateExportRequest = {
    dataset: values.dataset as string,
    from: values.from as string,
    to: values.to as string,
    ...(values.filter ? { filters: parseFilters(values.filter) } : {}),
    ...(values.columns ? { columns: values.columns.split(",").map((c) => c.trim()) } : {}),
    ...(values.format ? { format: values.format as "csv" | "jsonl" } : {}),
    ...(values.tz ? { timezone: values.tz } : {}),
  };
  const client = clientFrom(values);
  const out = { json: values.json ?? false, tty };
  const created = await client.createExport(request);
  if (!out.json) process.stderr.write(`Export ${created.id} ${created.status}.\n`);
  return follow(client, created.id, {
    dir: values.download,
    wait: (values.wait ?? false) || values.download !== undefined,
    cancelOnInterrupt: values["cancel-on-interrupt"] ?? false,
    out,
    first: created,
  });
}

async function exportsCommand(args: string[], tty: boolean): Promise<number> {
  const [sub, ...rest] = args;
  const { values, positionals } = parseArgs({
    args: rest,
    allowPositionals: true,
    options: {
      ...COMMON,
      status: { type: "string" },
      dataset: { type: "string" },
      limit: { type: "string" },
      download: { type: "string" },
      dir: { type: "string" },
      "cancel-on-interrupt": { type: "boolean" },
    },
  });
  const out = { json: values.json ?? false, tty };
  const id = () => {
    if (positionals.length !== 1) throw new ClientUsageError(`exports ${sub} takes one export id.`);
    return positionals[0] as string;
  };
  switch (sub) {
    case "get":
    case "cancel": {
      const exportId = id();
      const client = clientFrom(values);
      const exp = sub === "get" ? await client.getExport(exportId) : await client.cancelExport(exportId);
      process.stdout.write(`${out.json ? JSON.stringify(exp) : summary(exp)}\n`);
      return EXIT.ok;
    }
    case "list": {
      const client = clientFrom(values);
      const limit = values.limit === undefined ? 20 : Number(values.limit);
      if (!Number.isInteger(limit) || limit < 1)
        throw new ClientUsageError("--limit must be a positive integer.");
      const found: Export[] = [];
      for await (const exp of client.listExports({
        status: values.status as Export["status"] | undefined,
        dataset: values.dataset,
        limit: Math.min(limit, 100),
      })) {
        found.push(exp);
        if (found.length >= limit) break;
      }
      if (out.json) process.stdout.write(`${JSON.stringify(found)}\n`);
      else for (const exp of found) process.stdout.write(`${summary(exp)}\n`);
      return EXIT.ok;
    }
    case "wait":
    case "download": {
      const exportId = id();
      const dir = sub === "download" ? values.dir : values.download;
      if (sub === "download" && dir === undefined)
        throw new ClientUsageError("exports download needs --dir DIR.");
      return follow(clientFrom(values), exportId, {
        dir,
        wait: sub === "wait",
        cancelOnInterrupt: values["cancel-on-interrupt"] ?? false,
        out,
      });
    }
    default:
      throw new ClientUsageError(`Unknown command "exports ${sub ?? ""}".`);
  }
}

/**
 * Runs `export …` or `exports …` and returns the exit code; errors are written to stderr here (with
 * the request id when the API answered), never thrown.
 */
export async function runClientCommand(command: "export" | "exports", args: string[]): Promise<number> {
  const tty = process.stderr.isTTY === true;
  try {
    return command === "export" ? await exportCommand(args, tty) : await exportsCommand(args, tty);
  } catch (err) {
    if (err instanceof ClientUsageError || (err as { code?: string }).code?.startsWith("ERR_PARSE_ARGS")) {
      process.stderr.write(`exportd: ${(err as Error).message}\n\n${CLIENT_USAGE}\n`);
      return EXIT.usage;
    }
    if (err instanceof ChecksumMismatchError) {
      process.stderr.write(`exportd: ${err.message}\n`);
      return EXIT.checksum;
    }
    if (err instanceof ExportdApiError) {
      const details = err.details.map((d) => `\n  ${d.field}: ${d.message}`).join("");
      process.stderr.write(
        `exportd: ${err.code}: ${err.message}${details} (request ${err.requestId ?? "?"})\n`,
      );
      return err.status >= 500 || err.status === 429 ? EXIT.network : EXIT.refused;
    }
    if (err instanceof ExportdNetworkError) {
      process.stderr.write(`exportd: ${err.message}\n`);
      return EXIT.network;
    }
    if (err instanceof ExportdAbortError) return EXIT.interrupted;
    process.stderr.write(`exportd: ${err instanceof Error ? err.message : String(err)}\n`);
    return EXIT.network;
  }
}
