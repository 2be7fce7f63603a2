/**
 * Sums a V8 .cpuprofile (from `node --cpu-prof`) by function, top first: self time, and total time
 * (samples with the function anywhere on the stack, each sample counted once). Used to find where a
 * benchmark's time goes.  Run: node --import tsx bench/cpu-profile.ts <file.cpuprofile> [top]
 */
import fs from "node:fs";

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  hitCount?: number;
  children?: number[];
}

const [file, topArg] = process.argv.slice(2);
if (!file) throw new Error("usage: cpu-profile.ts <file.cpuprofile> [top]");
const profile = JSON.parse(fs.readFileSync(file, "utf8")) as { nodes: ProfileNode[] };
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const childIds = new Set(profile.nodes.flatMap((n) => n.children ?? []));

function nameOf(node: ProfileNode): string {
  const { functionName, url, lineNumber } = node.callFrame;
  const where = url
    ? `${url.replace(/^.*node_modules\//, "").replace(/^file:\/\/.*?\/(src|dist|bench)\//, "$1/")}:${lineNumber + 1}`
    : "";
  return `${functionName || "(anonymous)"} ${where}`.trim();
}

const self = new Map<string, number>();
const total = new Map<string, number>();
let all = 0;
let idle = 0;
// Depth-first from the roots, with the names on the current stack, so recursion counts once.
function walk(node: ProfileNode, onStack: Set<string>): void {
  const name = nameOf(node);
  const hits = node.hitCount ?? 0;
  all += hits;
  if (name === "(idle)") idle += hits;
  self.set(name, (self.get(name) ?? 0) + hits);
  const added = !onStack.has(name);
  if (added) onStack.add(name);
  for (const other of onStack) total.set(other, (total.get(other) ?? 0) + hits);
  for (const id of node.children ?? []) walk(byId.get(id) as ProfileNode, onStack);
  if (added) onStack.delete(name);
}
for (const node of profile.nodes) if (!childIds.has(node.id)) walk(node, new Set());

const busy = all - idle;
const top = Number(topArg ?? 30);
const print = (title: string, map: Map<string, number>) => {
  process.stdout.write(`${title} (% of busy samples; idle ${((100 * idle) / all).toFixed(0)}% left out)\n`);
  const rows = [...map].filter(([name]) => name !== "(idle)" && name !== "(root)");
  for (const [name, hits] of rows.sort((a, b) => b[1] - a[1]).slice(0, top)) {
    process.stdout.write(`${((100 * hits) / busy).toFixed(1).padStart(5)}%  ${name}\n`);
  }
};
print("self time", self);
print("total time", total);
