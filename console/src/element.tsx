/**
 * <exportd-export>: the create form and live progress of the console as a web component a product
 * drops into its own page (built alone into /console/exportd-export.js, a classic script).
 *
 *   <script src="https://exportd.example/console/exportd-export.js" defer></script>
 *   <exportd-export base-url="https://exportd.example" dataset="events" timezone="Europe/Paris"></exportd-export>
 *   element.token = tokenFromYourBackend; // or the token attribute
 *
 * Attributes: base-url (default: the page's origin), token, dataset, from, to, timezone, format,
 * columns (comma-separated), filters (JSON object: name → value or list), label (the button's text).
 * Events (bubbling, composed): `exportd-created` and `exportd-finished`, the export document in
 * `detail`. The styles live in its shadow root as a constructed style sheet, so a page's CSP that
 * forbids inline styles does not block them.
 */
import { render } from "preact";
import { useEffect, useMemo, useState } from "preact/hooks";
import { ApiClient, type ApiError, asApiError, isAbort } from "./api.js";
import { isFinalStatus } from "./status.js";
import css from "./styles.css?inline";
import type { Dataset, Export } from "./types.js";
import { ErrorNotice } from "./ui/ErrorNotice.js";
import { ExportForm, type FormPreset } from "./ui/ExportForm.js";
import { ExportProgress } from "./ui/ExportProgress.js";

const ATTRIBUTES = [
  "base-url",
  "token",
  "dataset",
  "from",
  "to",
  "timezone",
  "format",
  "columns",
  "filters",
  "label",
];

interface WidgetProps {
  host: HTMLElement;
  baseUrl: string;
  token: string | null;
  preset: FormPreset;
  label: string | null;
  presetError: string | null;
}

function Widget(props: WidgetProps) {
  const { token, baseUrl } = props;
  const [datasets, setDatasets] = useState<Dataset[] | null>(null);
  const [error, setError] = useState<ApiError | null>(null);
  const [active, setActive] = useState<Export | null>(null);
  const clientKey = `${baseUrl}\n${token ?? ""}`;
  // One client per base URL and token: a new one restarts the dry run and the live progress.
  const client = useMemo(() => (token ? new ApiClient(baseUrl, token) : null), [clientKey]);

  useEffect(() => {
    if (!client) return;
    const controller = new AbortController();
    setError(null);
    client
      .datasets(controller.signal)
      .then(setDatasets)
      .catch((err) => {
        if (!isAbort(err)) setError(asApiError(err));
      });
    return () => controller.abort();
  }, [clientKey]);

  const emit = (name: string, doc: Export) =>
    props.host.dispatchEvent(new CustomEvent(name, { detail: doc, bubbles: true, composed: true }));

  if (!client) return <p class="notice error">No token: set the element's token property or attribute.</p>;
  if (props.presetError) return <p class="notice error">{props.presetError}</p>;
  if (error) return <ErrorNotice error={error} />;
  if (!datasets) return <p aria-live="polite">Loading…</p>;
  const chosen = props.preset.dataset ? datasets.filter((d) => d.name === props.preset.dataset) : datasets;
  if (chosen.length === 0) {
    return <p class="notice error">The dataset “{props.preset.dataset}” is not available to this token.</p>;
  }
  return (
    <div class="widget">
      <ExportForm
        client={client}
        datasets={chosen}
        preset={props.preset}
        compact={chosen.length === 1}
        submitLabel={props.label ?? "Export"}
        onCreated={(doc) => {
          setActive(doc);
          emit("exportd-created", doc);
        }}
      />
      {active && (
        <ExportProgress
          key={active.id}
          client={client}
          initial={active}
          focus
          onStatus={(doc) => {
            if (isFinalStatus(doc.status)) emit("exportd-finished", doc);
          }}
        />
      )}
    </div>
  );
}

/** The stylesheet shared by every instance, adopted by each shadow root. */
let sheet: CSSStyleSheet | null = null;
function styleSheet(): CSSStyleSheet {
  if (!sheet) {
    sheet = new CSSStyleSheet();
    sheet.replaceSync(`:host{display:block}${css}`);
  }
  return sheet;
}

class ExportdExportElement extends HTMLElement {
  static get observedAttributes(): string[] {
    return ATTRIBUTES;
  }

  #token: string | null = null;
  readonly #root: ShadowRoot;

  constructor() {
    super();
    this.#root = this.attachShadow({ mode: "open" });
    this.#root.adoptedStyleSheets = [styleSheet()];
  }

  /** The credential sent as `Authorization: Bearer …`; the property wins over the attribute. */
  get token(): string | null {
    return this.#token ?? this.getAttribute("token");
  }

  set token(value: string | null) {
    this.#token = value;
    this.#render();
  }

  connectedCallback(): void {
    this.#render();
  }

  disconnectedCallback(): void {
    render(null, this.#root);
  }

  attributeChangedCallback(): void {
    if (this.isConnected) this.#render();
  }

  #render(): void {
    if (!this.isConnected) return;
    const attr = (name: string) => this.getAttribute(name) ?? undefined;
    const preset: FormPreset = {
      dataset: attr("dataset"),
      from: attr("from"),
      to: attr("to"),
      timezone: attr("timezone"),
      format: attr("format"),
    };
    const columns = attr("columns");
    if (columns)
      preset.columns = columns
        .split(",")
        .map((c) => c.trim())
        .filter(Boolean);
    let presetError: string | null = null;
    const filters = attr("filters");
    if (filters) {
      try {
        const parsed = JSON.parse(filters) as Record<string, string | string[]>;
        preset.filters = Object.fromEntries(
          Object.entries(parsed).map(([k, v]) => [k, Array.isArray(v) ? v.join(", ") : String(v)]),
        );
      } catch {
        presetError = "The filters attribute is not a JSON object.";
      }
    }
    render(
      <Widget
        host={this}
        baseUrl={attr("base-url") ?? window.location.origin}
        token={this.token}
        preset={preset}
        label={attr("label") ?? null}
        presetError={presetError}
      />,
      this.#root,
    );
  }
}

if (!customElements.get("exportd-export")) customElements.define("exportd-export", ExportdExportElement);
