/** Sign in with an API key (or a token the product gave out); checked by listing the datasets. */
import { useEffect, useRef, useState } from "preact/hooks";
import { ApiClient, type ApiError, asApiError } from "../api.js";
import type { Dataset } from "../types.js";
import { ErrorNotice } from "./ErrorNotice.js";

export function SignIn(props: {
  baseUrl: string;
  error: ApiError | null;
  /** Put the cursor in the credential field (after signing out). */
  focus?: boolean;
  onSignIn: (client: ApiClient, datasets: Dataset[], credential: string) => void;
}) {
  const [credential, setCredential] = useState("");
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<ApiError | null>(null);
  const input = useRef<HTMLInputElement>(null);
  useEffect(() => {
    if (props.focus) input.current?.focus();
  }, []);
  const submit = async (event: Event) => {
    event.preventDefault();
    const value = credential.trim();
    if (!value) return;
    setBusy(true);
    setError(null);
    try {
      const client = new ApiClient(props.baseUrl, value);
      props.onSignIn(client, await client.datasets(), value);
    } catch (err) {
      setError(asApiError(err));
    } finally {
      setBusy(false);
    }
  };
  return (
    <section class="card sign-in" aria-labelledby="sign-in-title">
      <h2 id="sign-in-title">Sign in</h2>
      <form onSubmit={submit}>
        <label>
          API key or token
          <input
            type="password"
            name="credential"
            ref={input}
            autocomplete="off"
            spellcheck={false}
            required
            value={credential}
            onInput={(e) => setCredential(e.currentTarget.value)}
            aria-describedby="sign-in-hint"
          />
        </label>
        <p id="sign-in-hint" class="hint">
          Kept in this tab only (session storage): closing the tab signs you out.
        </p>
        <button type="submit" disabled={busy}>
          {busy ? "Signing in…" : "Sign in"}
        </button>
      </form>
      <ErrorNotice error={error ?? props.error} focus />
    </section>
  );
}
