/**
 * Time left for a running export, from how fast its progress moved over the last samples. Progress
 * is rows / estimated_rows when the server knows the estimate, else the percent of the time range
 * covered (both as the status document reports them).
 */

/** The parts of a status document the estimate reads. */
export interface ProgressSample {
  percent: number;
  rows: number;
  estimated_rows: number | null;
}

/** Samples older than this are forgotten: the rate follows the recent pace. */
const WINDOW_MS = 20_000;
/** Below this span (or with no movement) there is no honest estimate yet. */
const MIN_SPAN_MS = 1_500;

/** The fraction done, 0–1. */
export function fractionDone(p: ProgressSample): number {
  const f = p.estimated_rows && p.estimated_rows > 0 ? p.rows / p.estimated_rows : p.percent / 100;
  return Math.min(1, Math.max(0, f));
}

export class EtaEstimator {
  private samples: { at: number; done: number }[] = [];

  /** Adds a sample taken at `now` (ms) and returns the seconds left, or null while unknown. */
  update(progress: ProgressSample, now: number): number | null {
    const done = fractionDone(progress);
    const last = this.samples[this.samples.length - 1];
    // A smaller value means the basis changed (the estimate arrived): start over.
    if (last && done < last.done) this.samples = [];
    this.samples.push({ at: now, done });
    while (this.samples.length > 2 && now - this.samples[0]!.at > WINDOW_MS) this.samples.shift();
    return this.secondsLeft();
  }

  /** Seconds left from the samples so far, or null. */
  secondsLeft(): number | null {
    const first = this.samples[0];
    const last = this.samples[this.samples.length - 1];
    if (!first || !last) return null;
    const span = last.at - first.at;
    const moved = last.done - first.done;
    if (span < MIN_SPAN_MS || moved <= 0) return null;
    if (last.done >= 1) return 0;
    return ((1 - last.done) / moved) * (span / 1000);
  }

  reset(): void {
    this.samples = [];
  }
}
