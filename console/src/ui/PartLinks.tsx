/**
 * One download link per part, from the signed links the status carries; a link about to expire is
 * replaced on click by a fresh one (GET /v1/exports/{id}/download?redirect=false).
 */
import { useState } from "preact/hooks";
import { type ApiClient, type ApiError, asApiError } from "../api.js";
import { formatBytes, formatCount } from "../format.js";
import type { Export } from "../types.js";
import { ErrorNotice } from "./ErrorNotice.js";

/** A link with less than this left is renewed before use. */
const RENEW_BEFORE_MS = 30_000;

export function PartLinks({ client, doc }: { client: ApiClient; doc: Export }) {
  const [error, setError] = useState<ApiError | null>(null);
  if (doc.parts.length === 0) return null;
  const total = doc.parts.length;
  const open = async (event: MouseEvent, index: number, url: string | null, expiresAt: string | null) => {
    if (url && expiresAt && Date.parse(expiresAt) - Date.now() > RENEW_BEFORE_MS) return;
    event.preventDefault();
    setError(null);
    try {
      const link = await client.downloadLink(doc.id, index);
      window.location.assign(link.url);
    } catch (err) {
      setError(asApiError(err));
    }
  };
  return (
    <div class="parts">
      <ul class="part-list">
        {doc.parts.map((part) => (
          <li key={part.index}>
            <a
              class="button secondary download"
              href={part.url ?? "#"}
              download={part.filename}
              data-part={part.index}
              data-sha256={part.sha256}
              aria-label={`Download part ${part.index + 1} of ${total}: ${part.filename}, ${formatBytes(part.bytes)}, ${formatCount(part.rows)} rows`}
              onClick={(e) => open(e, part.index, part.url, part.url_expires_at)}
            >
              Part {part.index + 1} <span class="meta">({formatBytes(part.bytes)})</span>
            </a>
          </li>
        ))}
      </ul>
      <ErrorNotice error={error} focus />
    </div>
  );
}
