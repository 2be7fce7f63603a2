/**
 * Progress streams (`GET /v1/exports/{id}/events`, Server-Sent Events) of one API process. The hub
 * holds every open stream and, while any is open, reads the store once per tick for all the exports
 * they watch (`ExportsPort.readExports`: one query, not one per stream), so any number of API
 * processes serve streams of exports that workers anywhere move. Where the store announces changes
 * (PostgreSQL's NOTIFY with the export id, `subscribeToExportChanges`), a change to a watched export
 * wakes a tick at once — coalesced, and no sooner than a stream's MIN_GAP_MS allows — so the poll
 * is only the fallback (SQLite, a lost LISTEN connection, queue positions moved by other exports).
 * Per stream it writes:
 * - `retry: 2000` first, then `event: progress` with the export document (exactly what
 *   `GET /v1/exports/{id}` answers) whenever status, rows, percent, parts, estimate, attempts or
 *   queue position change, at least MIN_GAP_MS apart;
 * - `event: status` with the final document once the export is final, then it ends the response;
 * - a comment `: ping` every heartbeat, so proxies and clients see a live connection;
 * - `event: error` with the error envelope a new request would get (`unauthorized`,
 *   `tenant_disabled`, `insufficient_scope`, `unknown_tenant`) once the stream's credential stops
 *   being valid, then it ends the response (credentials below).
 *
 * Credentials: a stream is authorized when it opens, but may last hours, while every other request
 * authenticates on its own. So the hub checks each distinct credential of its open streams again
 * every CREDENTIAL_CHECK_MS (one check per credential, however many streams it holds, through the
 * same one-second key and tenant caches requests read), and a token's stream ends at its `exp`
 * by a timer of its own. A revoked or rotated-out key, a disabled or deleted tenant, an operator
 * key acting for a tenant that is revoked: the stream ends within CREDENTIAL_CHECK_MS plus the
 * caches' second. A stream's final `status` event goes only to a credential still valid, checked
 * reading the store (no cache): disabling a tenant cancels its exports, and their streams are to
 * end with `tenant_disabled`. A check the store cannot answer leaves the streams open (as a tick does).
 *
 * Event ids are numbers, increasing per export: the emission's millisecond (since ID_EPOCH_MS)
 * times 2^13 plus 13 bits of a digest of the state the document shows. A reconnect with
 * `Last-Event-ID` gets the current document first only when the state it shows differs from the one
 * that id carried (a final export always gets its `status` event); two different states share
 * their 13 bits once in 8,192, and then the next change is what the client sees first.
 */
import { createHash } from "node:crypto";
import type { ServerResponse } from "node:http";
import { Socket } from "node:net";
import type { FastifyBaseLogger } from "fastify";
import { AppError } from "../../domain/errors.js";
import { isFinal } from "../../domain/export.js";
import type { ExportState, ExportsPort, ExportWithPosition } from "../../metadata/types.js";
import type { AuthContext, CredentialCheck } from "../auth.js";
import type { ErrorEnvelope } from "../errors.js";

/** What the client is told to wait before reconnecting (the SSE `retry` field), in ms. */
export const RETRY_MS = 2_000;
/** Two events of one stream are at least this far apart (ms); changes in between are merged. */
export const MIN_GAP_MS = 250;
/** Event ids count milliseconds from here (2024-01-01T00:00:00Z), so they stay safe integers until 2058. */
const ID_EPOCH_MS = 1_704_067_200_000;
const STATE_BITS = 8_192;
/** A stream whose client does not read is not written more than this ahead (bytes); progress waits. */
const MAX_BUFFERED = 256 * 1024;
/**
 * How often the credentials of open streams are checked again (ms). With the caches' second, a
 * revoked key or a disabled tenant ends its streams within about 6 s (a new request sees it within
 * 1 s). Each distinct credential costs one key (or operator key) and one tenant lookup per period
 * at most — 1/5 of what one client polling its export once a second costs, and nothing per stream.
 */
export const CREDENTIAL_CHECK_MS = 5_000;
/** Checks run at most this many at once, so thousands of distinct credentials do not flood the store's pool. */
const CHECKS_AT_ONCE = 8;
/** setTimeout's longest delay; a token expiring later is still ended by the periodic check. */
const MAX_TIMER_MS = 2_147_483_647;

/** The state a progress event reports (what changes while an export runs, never its signed links), as a key. */
function stateKey(s: ExportState): string {
  return [
    s.status,
    s.rows,
    s.percent,
    s.parts,
    s.estimatedRows,
    s.attempts,
    s.queuePosition,
    s.errorCode,
  ].join("|");
}

/** The state of a whole record, keyed as the store's ExportState of it would be. */
function stateOf(record: ExportWithPosition): string {
  return stateKey({
    id: record.id,
    tenantId: record.tenantId,
    status: record.status,
    percent: record.progress.percent,
    rows: record.progress.rows,
    parts: record.progress.parts,
    estimatedRows: record.estimatedRows,
    attempts: record.attempts,
    errorCode: record.error?.code ?? null,
    queuePosition: record.queuePosition,
  });
}

/** 13 bits of the state's digest. */
function stateBits(state: string): number {
  return createHash("sha256").update(state).digest().readUInt16BE(0) % STATE_BITS;
}

/** Reads a `Last-Event-ID` this server wrote; null for anything else. */
export function parseEventId(header: string | string[] | undefined): number | null {
  const text = Array.isArray(header) ? header[0] : header;
  if (text === undefined || !/^[0-9]{1,16}$/.test(text)) return null;
  const id = Number(text);
  return Number.isSafeInteger(id) ? id : null;
}

/** Runs `work` on every item, at most `limit` at a time. */
async function eachAtMost<T>(limit: number, items: T[], work: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < items.length) await work(items[next++] as T);
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
}

/** One open stream: its export, the caller's document for a record, where it stands. */
interface Stream {
  tenantId: string;
  exportId: string;
  res: ServerResponse;
  /** The export document for this caller (links only for keys that may download), as JSON text. */
  present: (record: ExportWithPosition) => Promise<string>;
  lastState: string | null;
  lastId: number;
  lastSentAt: number;
  /** An event is being built (links signed): the next tick leaves the stream alone. */
  busy: boolean;
  closed: boolean;
  /** The stream's credential, checked again every CREDENTIAL_CHECK_MS. */
  credential: CredentialCheck;
  /** The request's id, for the envelope of the `error` event. */
  requestId: string;
  /** Ends the stream at the token's `exp`. */
  expiry: NodeJS.Timeout | null;
}

export interface EventStreamOptions {
  exports: Pick<ExportsPort, "readExports" | "readExportStates" | "subscribeToExportChanges">;
  /** Streams this process holds open at most (EXPORTD_MAX_EVENT_STREAMS). */
  max: number;
  /** How often the store is read for all open streams (ms, EXPORTD_EVENT_POLL_MS). */
  pollMs: number;
  /** How often each stream gets a `: ping` comment (ms). */
  heartbeatMs: number;
  /** How often each open stream's credential is checked again (ms); CREDENTIAL_CHECK_MS by default. */
  credentialCheckMs?: number;
  clock: () => number;
  log: FastifyBaseLogger;
}

export class EventStreamHub {
  private readonly streams = new Set<Stream>();
  private readonly sockets = new Set<Socket>();
  /** The open streams by export id, for announced changes. */
  private readonly watched = new Map<string, Set<Stream>>();
  private poller: NodeJS.Timeout | null = null;
  private heartbeat: NodeJS.Timeout | null = null;
  private checker: NodeJS.Timeout | null = null;
  private checking = false;
  /** A tick asked for by an announced change, and when it runs. */
  private wakeTimer: NodeJS.Timeout | null = null;
  private wakeAt = Number.POSITIVE_INFINITY;
  /** A change was announced while a tick ran: tick again after it. */
  private again = false;
  private subscribed = false;
  private ticking = false;
  private closing = false;

  constructor(private readonly options: EventStreamOptions) {}

  /** How many streams are open now. */
  get size(): number {
    return this.streams.size;
  }

  /** Whether one more stream may open (the cap is per process). */
  hasRoom(): boolean {
    return !this.closing && this.streams.size < this.options.max;
  }

  /**
   * Starts a stream on `res` (headers already written by the route) for `record`, read just now
   * with the caller's tenant. `lastEventId` comes from the reconnecting client's `Last-Event-ID`.
   */
  async open(init: {
    res: ServerResponse;
    record: ExportWithPosition;
    present: (record: ExportWithPosition) => Promise<string>;
    lastEventId: number | null;
    credential: CredentialCheck;
    requestId: string;
  }): Promise<void> {
    const { res, record } = init;
    const stream: Stream = {
      tenantId: record.tenantId,
      exportId: record.id,
      res,
      present: init.present,
      lastState: null,
      lastId: init.lastEventId ?? 0,
      lastSentAt: 0,
      busy: false,
      closed: false,
      credential: init.credential,
      requestId: init.requestId,
      expiry: null,
    };
    res.on("close", () => this.drop(stream));
    const expiresAt = init.credential.expiresAt;
    if (expiresAt !== null) {
      // At `exp`, not `exp` plus the verifier's clock tolerance: the token is no longer valid then.
      const left = expiresAt - this.options.clock();
      if (left <= MAX_TIMER_MS) {
        stream.expiry = setTimeout(
          () => this.refuse(stream, new AppError("unauthorized", "The token has expired.")),
          Math.max(0, left),
        );
        stream.expiry.unref();
      }
    }
    // Stream connections are never reused (`Connection: close`): the hub keeps each until it closes,
    // so closing the server can end those a vanished client left open.
    const socket = res.socket;
    // (In-process test requests have a stand-in socket of their own: nothing to close there.)
    if (socket instanceof Socket) {
      this.sockets.add(socket);
      socket.once("close", () => this.sockets.delete(socket));
    }
    // Counted from the start (the cap holds while first events are built); `send` marks it busy,
    // so a tick in between leaves it alone.
    this.streams.add(stream);
    const same = this.watched.get(stream.exportId) ?? new Set<Stream>();
    this.watched.set(stream.exportId, same);
    same.add(stream);
    this.start();
    res.write(`retry: ${RETRY_MS}\n\n`);
    const state = stateOf(record);
    if (
      init.lastEventId !== null &&
      !isFinal(record.status) &&
      stateBits(state) === init.lastEventId % STATE_BITS
    ) {
      // The client already saw this state: the next change is its next event.
      stream.lastState = state;
    } else {
      await this.send(stream, record, state);
    }
  }

  /** Ends every stream and stops the timers (the server is closing). */
  closeAll(): void {
    this.closing = true;
    this.stop();
    for (const stream of this.streams) {
      stream.closed = true;
      stream.res.end();
    }
    this.streams.clear();
    // What is written is flushed by the kernel; a client that stopped reading holds nothing.
    for (const socket of this.sockets) socket.destroySoon();
    setTimeout(() => {
      for (const socket of this.sockets) socket.destroy();
    }, 1_000).unref();
  }

  private drop(stream: Stream): void {
    stream.closed = true;
    if (stream.expiry) clearTimeout(stream.expiry);
    this.streams.delete(stream);
    const same = this.watched.get(stream.exportId);
    same?.delete(stream);
    if (same?.size === 0) this.watched.delete(stream.exportId);
    if (this.streams.size === 0) this.stop();
  }

  private start(): void {
    this.subscribe();
    if (this.poller) return;
    this.poller = setInterval(() => void this.tick(), this.options.pollMs);
    this.heartbeat = setInterval(() => this.ping(), this.options.heartbeatMs);
    this.checker = setInterval(
      () => void this.checkCredentials(),
      this.options.credentialCheckMs ?? CREDENTIAL_CHECK_MS,
    );
  }

  private stop(): void {
    if (this.poller) clearInterval(this.poller);
    if (this.heartbeat) clearInterval(this.heartbeat);
    if (this.checker) clearInterval(this.checker);
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.poller = null;
    this.heartbeat = null;
    this.checker = null;
    this.wakeTimer = null;
    this.wakeAt = Number.POSITIVE_INFINITY;
  }

  /** Listens for announced changes from the first stream on (one LISTEN connection, kept). */
  private subscribe(): void {
    const subscribe = this.options.exports.subscribeToExportChanges;
    if (this.subscribed || !subscribe) return;
    this.subscribed = true;
    subscribe
      .call(this.options.exports, (id) => this.changed(id))
      .catch((err: unknown) => this.options.log.warn({ err }, "progress streams only poll the store"));
  }

  /**
   * An export changed (null: something may have, unheard): a tick as soon as one of its streams
   * may get an event. Changes to exports no stream here watches cost a map lookup.
   */
  private changed(exportId: string | null): void {
    if (this.closing || this.streams.size === 0) return;
    const same = exportId === null ? this.streams : this.watched.get(exportId);
    if (!same) return;
    const now = this.options.clock();
    let delay = Number.POSITIVE_INFINITY;
    for (const stream of same) delay = Math.min(delay, Math.max(0, MIN_GAP_MS - (now - stream.lastSentAt)));
    this.wake(delay);
  }

  /** A tick in `delayMs`, unless one is due sooner: many changes in a row make one read. */
  private wake(delayMs: number): void {
    if (!Number.isFinite(delayMs) || this.poller === null) return;
    const at = this.options.clock() + delayMs;
    if (this.wakeTimer && this.wakeAt <= at) return;
    if (this.wakeTimer) clearTimeout(this.wakeTimer);
    this.wakeAt = at;
    this.wakeTimer = setTimeout(() => {
      this.wakeTimer = null;
      this.wakeAt = Number.POSITIVE_INFINITY;
      void this.tick(true);
    }, delayMs);
  }

  /**
   * Checks every distinct credential of the open streams again, once each, at most CHECKS_AT_ONCE
   * at a time, and ends the streams of those no longer valid — or no longer acting for the
   * stream's tenant — with the reason.
   */
  private async checkCredentials(): Promise<void> {
    if (this.checking || this.streams.size === 0) return;
    this.checking = true;
    try {
      const byCredential = new Map<string, Stream[]>();
      for (const stream of this.streams) {
        const same = byCredential.get(stream.credential.id);
        if (same) same.push(stream);
        else byCredential.set(stream.credential.id, [stream]);
      }
      await eachAtMost(CHECKS_AT_ONCE, [...byCredential.values()], async (same) => {
        const verdict = await this.verdict(same[0] as Stream);
        for (const stream of same) this.judge(stream, verdict);
      });
    } finally {
      this.checking = false;
    }
  }

  /**
   * The credential of `stream` checked again: the caller it is now, the AppError a new request with
   * it would get, or null when the check could not be made (the store or the JWKS is away, 503):
   * streams then stay open, as a tick leaves them, and the next period checks again.
   */
  private async verdict(stream: Stream, fresh = false): Promise<AuthContext | AppError | null> {
    try {
      return await stream.credential.check(this.options.clock(), { fresh });
    } catch (err) {
      // A refusal of the credential; not an outage (503) nor a rate limit (429).
      if (err instanceof AppError && err.status < 429) return err;
      this.options.log.warn({ err }, "progress streams could not check a credential");
      return null;
    }
  }

  /** Ends `stream` when `verdict` refuses its credential; true when it did. */
  private judge(stream: Stream, verdict: AuthContext | AppError | null): boolean {
    if (verdict === null) return false;
    if (verdict instanceof AppError) {
      this.refuse(stream, verdict);
      return true;
    }
    if (verdict.tenantId === stream.tenantId) return false;
    // Deleted and created again under the same name: not the tenant of the stream's export.
    this.refuse(
      stream,
      new AppError("unauthorized", "The credential no longer acts for this export's tenant."),
    );
    return true;
  }

  /** Ends the stream with `event: error` and the error envelope saying why (always written). */
  private refuse(stream: Stream, err: AppError): void {
    if (stream.closed) return;
    const envelope: ErrorEnvelope = {
      error: { code: err.code, message: err.message, request_id: stream.requestId, details: err.details },
    };
    stream.res.write(`event: error\ndata: ${JSON.stringify(envelope)}\n\n`);
    this.options.log.info(
      {
        export_id: stream.exportId,
        tenant_id: stream.tenantId,
        code: err.code,
        request_id: stream.requestId,
      },
      "progress stream ended: its credential is no longer valid",
    );
    this.end(stream);
  }

  private ping(): void {
    for (const stream of this.streams) {
      if (!stream.res.writableNeedDrain) stream.res.write(": ping\n\n");
    }
  }

  /**
   * One read of the store for every open stream (their exports' ExportState), then the whole
   * records of the exports whose state moved, in one more read, and an event for each stream of them.
   */
  private async tick(woken = false): Promise<void> {
    if (this.ticking) {
      // The running tick may have read the store before the change: read again after it.
      if (woken) this.again = true;
      return;
    }
    if (this.streams.size === 0) return;
    this.ticking = true;
    /** The soonest a stream held back by MIN_GAP_MS may be written (a woken tick comes back then). */
    let held = Number.POSITIVE_INFINITY;
    try {
      const watched = new Map<string, { tenantId: string; id: string }>();
      for (const s of this.streams)
        watched.set(`${s.tenantId}/${s.exportId}`, { tenantId: s.tenantId, id: s.exportId });
      const states = new Map<string, { key: string; final: boolean }>();
      for (const state of await this.options.exports.readExportStates([...watched.values()]))
        states.set(`${state.tenantId}/${state.id}`, { key: stateKey(state), final: isFinal(state.status) });
      const now = this.options.clock();
      let due: Stream[] = [];
      for (const stream of this.streams) {
        if (stream.busy) continue;
        const key = `${stream.tenantId}/${stream.exportId}`;
        const state = states.get(key);
        if (state === undefined) {
          // Forgotten by retention meanwhile: nothing more will come.
          this.end(stream);
          continue;
        }
        if (state.key === stream.lastState) continue;
        // Final statuses are never held back; progress waits for the gap and for a reading client.
        if (!state.final && now - stream.lastSentAt < MIN_GAP_MS) {
          held = Math.min(held, MIN_GAP_MS - (now - stream.lastSentAt));
          continue;
        }
        if (!state.final && stream.res.writableLength > MAX_BUFFERED) continue;
        due.push(stream);
      }
      if (due.length === 0) return;
      // A stream's last event goes only to a credential still valid, read from the store: disabling
      // a tenant cancels its exports, and its streams are to end with `tenant_disabled`, not with
      // the canceled document a tenant cache a second behind would let through.
      const finals = new Map<string, Stream[]>();
      for (const stream of due) {
        if (!states.get(`${stream.tenantId}/${stream.exportId}`)?.final) continue;
        const same = finals.get(stream.credential.id);
        if (same) same.push(stream);
        else finals.set(stream.credential.id, [stream]);
      }
      const refused = new Set<Stream>();
      await eachAtMost(CHECKS_AT_ONCE, [...finals.values()], async (same) => {
        const verdict = await this.verdict(same[0] as Stream, true);
        for (const stream of same) if (this.judge(stream, verdict)) refused.add(stream);
      });
      if (refused.size > 0) due = due.filter((s) => !refused.has(s));
      if (due.length === 0) return;
      const wanted = new Map(
        due.map((s) => [`${s.tenantId}/${s.exportId}`, { tenantId: s.tenantId, id: s.exportId }]),
      );
      const records = new Map(
        (await this.options.exports.readExports([...wanted.values()])).map((r) => [
          `${r.tenantId}/${r.id}`,
          r,
        ]),
      );
      await Promise.all(
        due.map((stream) => {
          const record = records.get(`${stream.tenantId}/${stream.exportId}`);
          return record ? this.send(stream, record, stateOf(record)) : undefined;
        }),
      );
    } catch (err) {
      // The store is away: streams stay open and the next tick reads again.
      this.options.log.warn({ err }, "progress streams could not read the store");
    } finally {
      this.ticking = false;
      if (this.again) {
        this.again = false;
        this.wake(0);
      } else if (woken) this.wake(held);
    }
  }

  /** Writes the document as a `progress` event, or as the `status` event that ends a final export's stream. */
  private async send(stream: Stream, record: ExportWithPosition, state: string): Promise<void> {
    stream.busy = true;
    try {
      const body = await stream.present(record);
      if (stream.closed) return;
      const now = this.options.clock();
      const id = Math.max(stream.lastId + 1, (now - ID_EPOCH_MS) * STATE_BITS + stateBits(state));
      const final = isFinal(record.status);
      stream.res.write(`event: ${final ? "status" : "progress"}\nid: ${id}\ndata: ${body}\n\n`);
      stream.lastId = id;
      stream.lastState = state;
      stream.lastSentAt = now;
      if (final) this.end(stream);
    } catch (err) {
      this.options.log.warn({ err, export_id: stream.exportId }, "progress event failed; stream closed");
      this.end(stream);
    } finally {
      stream.busy = false;
    }
  }

  private end(stream: Stream): void {
    this.drop(stream);
    stream.res.end();
  }
}
