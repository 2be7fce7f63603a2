/** The tenant's exports, newest first, with status, rows, size and a download link per part. */
import { useEffect, useState } from "preact/hooks";
import { type ApiClient, type ApiError, asApiError, isAbort } from "../api.js";
import { formatBytes, formatCount, formatInstant } from "../format.js";
import { isFinalStatus, isSucceeded, statusLabel } from "../status.js";
import type { Export } from "../types.js";
import { ErrorNotice } from "./ErrorNotice.js";
import { PartLinks } from "./PartLinks.js";

/** Exports per page of the history. */
const PAGE = 10;
/** How often the first page is read again while one of its exports is queued or running. */
const ACTIVE_REFRESH_MS = 5000;

export function History(props: {
  client: ApiClient;
  /** Changing it reloads the first page (after a create, a cancel, a finish). */
  refreshKey: number;
  onWatch: (doc: Export) => void;
}) {
  const { client } = props;
  const [rows, setRows] = useState<Export[]>([]);
  const [next, setNext] = useState<string | null>(null);
  const [loading, setLoading] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const [reloads, setReloads] = useState(0);

  useEffect(() => {
    const controller = new AbortController();
    setLoading(true);
    client
      .list(null, PAGE, controller.signal)
      .then((page) => {
        setRows(page.data);
        setNext(page.next_cursor);
        setError(null);
      })
      .catch((err) => {
        if (!isAbort(err)) setError(asApiError(err));
      })
      .finally(() => setLoading(false));
    return () => controller.abort();
  }, [client, props.refreshKey, reloads]);

  // Rows of running exports move on their own (not when older pages were added: they would go).
  useEffect(() => {
    if (rows.length > PAGE || !rows.some((d) => !isFinalStatus(d.status))) return;
    const timer = setTimeout(() => setReloads((n) => n + 1), ACTIVE_REFRESH_MS);
    return () => clearTimeout(timer);
  }, [rows]);

  const more = async () => {
    setLoading(true);
    try {
      const page = await client.list(next, PAGE);
      setRows((r) => [...r, ...page.data]);
      setNext(page.next_cursor);
    } catch (err) {
      setError(asApiError(err));
    } finally {
      setLoading(false);
    }
  };

  return (
    <section class="card history" aria-labelledby="history-title" aria-busy={loading}>
      <div class="section-head">
        <h2 id="history-title">History</h2>
        <button type="button" class="secondary" onClick={() => setReloads((n) => n + 1)}>
          Refresh
        </button>
      </div>
      <ErrorNotice error={error} />
      {rows.length === 0 && !loading && !error && <p>No exports yet.</p>}
      {rows.length > 0 && (
        <table>
          <caption class="visually-hidden">Your exports, newest first</caption>
          <thead>
            <tr>
              <th scope="col">Created</th>
              <th scope="col">Dataset</th>
              <th scope="col">Status</th>
              <th scope="col">Rows</th>
              <th scope="col">Size</th>
              <th scope="col">Download</th>
            </tr>
          </thead>
          <tbody>
            {rows.map((doc) => (
              <tr key={doc.id} data-export-id={doc.id} data-status={doc.status}>
                <td data-label="Created">{formatInstant(doc.created_at)}</td>
                <td data-label="Dataset">{doc.dataset}</td>
                <td data-label="Status">
                  <span class={`badge status-${doc.status}`}>{statusLabel(doc.status)}</span>{" "}
                  <button
                    type="button"
                    class="link open"
                    onClick={() => props.onWatch(doc)}
                    aria-label={`${isFinalStatus(doc.status) ? "Details of" : "Watch"} the ${doc.dataset} export created ${formatInstant(doc.created_at)}`}
                  >
                    {isFinalStatus(doc.status) ? "Details" : "Watch"}
                  </button>
                  {doc.error && (
                    <span class="meta">
                      {" "}
                      {doc.error.message} (<code>{doc.error.code}</code>)
                    </span>
                  )}
                </td>
                <td data-label="Rows">{formatCount(doc.progress.rows)}</td>
                <td data-label="Size">
                  {doc.parts.length > 0 ? formatBytes(doc.parts.reduce((s, p) => s + p.bytes, 0)) : "—"}
                </td>
                <td data-label="Download">
                  {isSucceeded(doc.status) ? <PartLinks client={client} doc={doc} /> : "—"}
                </td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
      {next && (
        <button type="button" class="secondary" onClick={more} disabled={loading}>
          {loading ? "Loading…" : "Show older exports"}
        </button>
      )}
    </section>
  );
}
