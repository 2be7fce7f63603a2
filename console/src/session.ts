/**
 * The credential the page sends as `Authorization: Bearer …`: an API key typed in, or a token the
 * embedding product hands over in the URL fragment (`/console#token=…`, read once and removed from
 * the address bar and history). Either is kept in sessionStorage only: gone when the tab closes.
 */

const STORAGE_KEY = "exportd.credential";

/** Reads `#token=…` once: returns it and rewrites the URL without the fragment. */
export function takeFragmentToken(): string | null {
  const hash = window.location.hash;
  if (!hash.startsWith("#")) return null;
  const token = new URLSearchParams(hash.slice(1)).get("token");
  if (!token) return null;
  window.history.replaceState(null, "", window.location.pathname + window.location.search);
  return token;
}

export function loadCredential(): string | null {
  try {
    return window.sessionStorage.getItem(STORAGE_KEY);
  } catch {
    return null; // storage disabled: sign in again on every load
  }
}

export function saveCredential(credential: string): void {
  try {
    window.sessionStorage.setItem(STORAGE_KEY, credential);
  } catch {
    // storage disabled: the credential lives in memory for this page only
  }
}

export function clearCredential(): void {
  try {
    window.sessionStorage.removeItem(STORAGE_KEY);
  } catch {
    // nothing stored
  }
}
