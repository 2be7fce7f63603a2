/** An error as the API answered it: its message, the field details, its code and request id. */
import { useEffect, useRef } from "preact/hooks";
import type { ApiError } from "../api.js";

export function ErrorNotice({ error, focus = false }: { error: ApiError | null; focus?: boolean }) {
  const ref = useRef<HTMLDivElement>(null);
  // Keyboard and screen-reader users land on the error after an action they took fails.
  useEffect(() => {
    if (error && focus) ref.current?.focus();
  }, [error, focus]);
  if (!error) return null;
  return (
    <div class="notice error" role="alert" tabIndex={-1} ref={ref} data-code={error.code}>
      <p class="notice-message">{error.message}</p>
      {error.details.length > 0 && (
        <ul>
          {error.details.map((d) => (
            <li key={`${d.field}:${d.code}`}>
              <span class="field">{d.field}</span>: {d.message} <code>{d.code}</code>
            </li>
          ))}
        </ul>
      )}
      <p class="meta">
        Error code <code class="error-code">{error.code}</code>
        {error.status > 0 && <> · HTTP {error.status}</>}
        {error.requestId && (
          <>
            {" "}
            · request <code>{error.requestId}</code>
          </>
        )}
      </p>
    </div>
  );
}
