/**
 * One export followed live: status, a progress bar, rows and the time left, Cancel while it can be
 * canceled, the download links once it succeeded, its error once it failed. Screen readers hear the
 * status changes and every tenth of the way (a polite live region), not every update.
 */
import { useEffect, useMemo, useRef, useState } from "preact/hooks";
import { type ApiClient, type ApiError, asApiError, isAbort } from "../api.js";
import { EtaEstimator } from "../eta.js";
import { formatBytes, formatCount, formatDuration, formatInstant } from "../format.js";
import { isFinalStatus, isQueued, isSucceeded, statusLabel } from "../status.js";
import type { Export } from "../types.js";
import { watchExport } from "../watch.js";
import { ErrorNotice } from "./ErrorNotice.js";
import { PartLinks } from "./PartLinks.js";

/** What the export is at now, after its status (shown beside the status badge). */
export function describe(doc: Export, secondsLeft: number | null): string {
  const { progress } = doc;
  if (isQueued(doc.status))
    return doc.queue_position ? `Number ${doc.queue_position} in line.` : "Waiting to start.";
  if (!isFinalStatus(doc.status)) {
    const of = progress.estimated_rows ? ` of about ${formatCount(progress.estimated_rows)}` : "";
    const left = secondsLeft === null ? "" : ` About ${formatDuration(secondsLeft)} left.`;
    return `${Math.floor(progress.percent)}% done, ${formatCount(progress.rows)}${of} rows.${left}`;
  }
  if (isSucceeded(doc.status)) {
    const bytes = doc.parts.reduce((sum, p) => sum + p.bytes, 0);
    const parts = doc.parts.length === 1 ? "1 part" : `${doc.parts.length} parts`;
    return `${formatCount(progress.rows)} rows in ${parts}, ${formatBytes(bytes)}.`;
  }
  return doc.error ? doc.error.message : "";
}

export function ExportProgress(props: {
  client: ApiClient;
  initial: Export;
  /** Called when the status changes (not on the first document), e.g. to refresh a history. */
  onStatus?: (doc: Export) => void;
  /** Move focus to the heading when shown (after a create). */
  focus?: boolean;
}) {
  const { client } = props;
  const [doc, setDoc] = useState(props.initial);
  const [eta, setEta] = useState<number | null>(null);
  const [mode, setMode] = useState<"stream" | "polling" | "">("");
  const [trouble, setTrouble] = useState<ApiError | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [canceling, setCanceling] = useState(false);
  const [announcement, setAnnouncement] = useState("");
  const estimator = useMemo(() => new EtaEstimator(), []);
  const heading = useRef<HTMLHeadingElement>(null);
  const milestone = useRef({ status: "", tenth: -1 });
  const onStatus = useRef(props.onStatus);
  onStatus.current = props.onStatus;
  const lastStatus = useRef(props.initial.status);
  const changed = (next: Export) => {
    if (next.status === lastStatus.current) return;
    lastStatus.current = next.status;
    onStatus.current?.(next);
  };

  useEffect(() => {
    if (props.focus) heading.current?.focus();
  }, []);

  useEffect(() => {
    const controller = new AbortController();
    watchExport(client, props.initial.id, {
      signal: controller.signal,
      onMode: setMode,
      onTrouble: setTrouble,
      onUpdate: (next) => {
        const left =
          isFinalStatus(next.status) || isQueued(next.status)
            ? null
            : estimator.update(next.progress, Date.now());
        setEta(left);
        setDoc(next);
        changed(next);
      },
    }).catch((err) => {
      if (!isAbort(err) && !controller.signal.aborted) setError(asApiError(err));
    });
    return () => controller.abort();
  }, [client, props.initial.id]);

  // Announce a status change, and running progress once per tenth.
  useEffect(() => {
    const tenth = Math.floor(doc.progress.percent / 10);
    const seen = milestone.current;
    if (seen.status !== doc.status || (!isFinalStatus(doc.status) && tenth > seen.tenth)) {
      milestone.current = { status: doc.status, tenth };
      setAnnouncement(
        `${doc.dataset} export ${statusLabel(doc.status).toLowerCase()}: ${describe(doc, eta)}`,
      );
    }
  }, [doc, eta]);

  const cancel = async () => {
    setCanceling(true);
    setError(null);
    try {
      const next = await client.cancel(doc.id);
      setDoc(next);
      changed(next);
      // The Cancel button is gone: keep focus in the export rather than losing it to the page.
      heading.current?.focus();
    } catch (err) {
      setError(asApiError(err));
    } finally {
      setCanceling(false);
    }
  };

  const headingId = `export-${doc.id}`;
  const percent = isSucceeded(doc.status) ? 100 : doc.progress.percent;
  return (
    <section
      class="card export-progress"
      aria-labelledby={headingId}
      data-export-id={doc.id}
      data-status={doc.status}
      data-mode={mode}
    >
      <h2 id={headingId} tabIndex={-1} ref={heading}>
        Export of {doc.dataset}
      </h2>
      <p class="meta">
        {formatInstant(doc.request.from)} to {formatInstant(doc.request.to)} ({doc.request.timezone}),{" "}
        {doc.request.format.toUpperCase()} · created {formatInstant(doc.created_at)}
      </p>
      <progress
        class="bar"
        max={100}
        value={percent}
        aria-label={`Progress of the ${doc.dataset} export`}
        aria-valuetext={`${Math.floor(percent)}%`}
      />
      <p class="status-line">
        <span class={`badge status-${doc.status}`}>{statusLabel(doc.status)}</span> {describe(doc, eta)}
      </p>
      <p class="visually-hidden" aria-live="polite" aria-atomic="true">
        {announcement}
      </p>
      {trouble && (
        <p class="hint" role="status">
          Reconnecting ({trouble.message})
        </p>
      )}
      {doc.error && (
        <div class="notice error" role="alert">
          <p class="notice-message">{doc.error.message}</p>
          <p class="meta">
            Error code <code class="error-code">{doc.error.code}</code>
            {doc.error.retryable ? " · retryable" : ""}
          </p>
        </div>
      )}
      {doc.cancellable && (
        <button type="button" class="danger" onClick={cancel} disabled={canceling}>
          {canceling ? "Canceling…" : "Cancel export"}
        </button>
      )}
      {isSucceeded(doc.status) && <PartLinks client={client} doc={doc} />}
      <ErrorNotice error={error} focus />
    </section>
  );
}
