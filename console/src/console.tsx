/**
 * The /console page: sign in, create an export (with its dry run), follow it live, cancel it, and
 * the history with downloads. The API is exportd's own origin (same-origin requests only: the page's
 * Content-Security-Policy allows nothing else).
 */
import { render } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { ApiClient, type ApiError, asApiError } from "./api.js";
import { clearCredential, loadCredential, saveCredential, takeFragmentToken } from "./session.js";
import "./styles.css";
import type { Dataset, Export } from "./types.js";
import { ExportForm } from "./ui/ExportForm.js";
import { ExportProgress } from "./ui/ExportProgress.js";
import { History } from "./ui/History.js";
import { SignIn } from "./ui/SignIn.js";

/** The API's base: the page's URL without its trailing `console` (exportd may sit under a prefix). */
const BASE_URL = new URL(
  window.location.pathname.replace(/console\/?(index\.html)?$/, ""),
  window.location.origin,
).href;

interface Session {
  client: ApiClient;
  datasets: Dataset[];
}

function App() {
  const [session, setSession] = useState<Session | null>(null);
  const [restoring, setRestoring] = useState(true);
  const [signInError, setSignInError] = useState<ApiError | null>(null);
  const [watching, setWatching] = useState<{ doc: Export; focus: boolean } | null>(null);
  const [historyKey, setHistoryKey] = useState(0);
  const [signedOut, setSignedOut] = useState(false);
  const formHeading = useRef<HTMLHeadingElement>(null);

  const signedIn = useCallback((client: ApiClient, datasets: Dataset[], credential: string) => {
    saveCredential(credential);
    setSignInError(null);
    setSession({ client, datasets });
  }, []);

  // A token handed over in the fragment wins over a stored one; either is checked before use.
  useEffect(() => {
    const credential = takeFragmentToken() ?? loadCredential();
    if (!credential) {
      setRestoring(false);
      return;
    }
    const client = new ApiClient(BASE_URL, credential);
    client
      .datasets()
      .then((datasets) => signedIn(client, datasets, credential))
      .catch((err) => {
        clearCredential();
        setSignInError(asApiError(err));
      })
      .finally(() => setRestoring(false));
  }, []);

  useEffect(() => {
    if (session) formHeading.current?.focus();
  }, [session]);

  const signOut = () => {
    clearCredential();
    setSession(null);
    setWatching(null);
    setSignedOut(true);
  };

  return (
    <>
      <header class="top">
        <h1>exportd</h1>
        {session && (
          <button type="button" class="secondary" onClick={signOut}>
            Sign out
          </button>
        )}
      </header>
      <main>
        {!session && !restoring && (
          <SignIn baseUrl={BASE_URL} error={signInError} focus={signedOut} onSignIn={signedIn} />
        )}
        {restoring && <p aria-live="polite">Signing in…</p>}
        {session && (
          <>
            <section class="card" aria-labelledby="new-export-title">
              <h2 id="new-export-title" tabIndex={-1} ref={formHeading}>
                New export
              </h2>
              {session.datasets.length === 0 ? (
                <p>This key may not export any dataset.</p>
              ) : (
                <ExportForm
                  client={session.client}
                  datasets={session.datasets}
                  onCreated={(doc) => {
                    setWatching({ doc, focus: true });
                    setHistoryKey((n) => n + 1);
                  }}
                />
              )}
            </section>
            {watching && (
              <ExportProgress
                key={watching.doc.id}
                client={session.client}
                initial={watching.doc}
                focus={watching.focus}
                onStatus={() => setHistoryKey((n) => n + 1)}
              />
            )}
            <History
              client={session.client}
              refreshKey={historyKey}
              onWatch={(doc) => setWatching({ doc, focus: true })}
            />
          </>
        )}
      </main>
    </>
  );
}

const root = document.getElementById("app");
if (root) render(<App />, root);
