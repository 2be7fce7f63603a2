/**
 * IP addresses for the webhook URL rules (SSRF): reading every form a host may spell an address in
 * — IPv4 as inet_aton reads it (decimal `2130706433`, octal `0177.0.0.1`, hex `0x7f000001`, short
 * `127.1`), IPv6 with `::`, embedded IPv4 and a zone — and the networks a webhook may not reach.
 * Pure: resolving names is the sender's (webhooks/sender.ts).
 */

/** An address as a number: 32 bits for IPv4, 128 for IPv6. */
export interface IpAddress {
  family: 4 | 6;
  value: bigint;
}

/** One IPv4 component as inet_aton reads it: 0x… hex, 0… octal, else decimal. */
function ipv4Part(text: string): bigint | null {
  if (/^0x[0-9a-f]*$/i.test(text)) return text.length === 2 ? 0n : BigInt(text);
  if (/^0[0-7]*$/.test(text)) return BigInt(`0o${text.slice(1) || "0"}`);
  if (/^[1-9][0-9]*$/.test(text)) return BigInt(text);
  return null;
}

/**
 * IPv4 in any form inet_aton takes: 1 to 4 parts, the last filling the remaining bytes
 * (`127.1` = 127.0.0.1, `2130706433` = 127.0.0.1). Null when the text is no IPv4 address.
 */
export function parseIpv4(text: string): bigint | null {
  const parts = text.split(".");
  if (parts.length > 1 && parts[parts.length - 1] === "") parts.pop(); // a trailing dot
  if (parts.length < 1 || parts.length > 4) return null;
  const values = parts.map(ipv4Part);
  if (values.some((v) => v === null)) return null;
  const nums = values as bigint[];
  const last = nums[nums.length - 1] as bigint;
  const lastBits = BigInt(8 * (5 - nums.length));
  if (last >= 1n << lastBits) return null;
  let value = 0n;
  for (let i = 0; i < nums.length - 1; i++) {
    const n = nums[i] as bigint;
    if (n > 255n) return null;
    value |= n << BigInt(8 * (3 - i));
  }
  return value | last;
}

/** IPv6 (with `::`, a trailing dotted IPv4 and an optional `%zone`). Null when it is none. */
export function parseIpv6(text: string): bigint | null {
  const bare = text.replace(/^\[|\]$/g, "").replace(/%.*$/, "");
  if (!/^[0-9a-f:.]+$/i.test(bare) || !bare.includes(":")) return null;
  let groups: string[] = [];
  const halves = bare.split("::");
  if (halves.length > 2) return null;
  const split = (s: string) => (s === "" ? [] : s.split(":"));
  const expand = (list: string[]): number[] | null => {
    const out: number[] = [];
    for (const [i, g] of list.entries()) {
      if (g.includes(".")) {
        if (i !== list.length - 1) return null;
        const v4 = /^\d{1,3}(\.\d{1,3}){3}$/.test(g) ? parseIpv4(g) : null;
        if (v4 === null) return null;
        out.push(Number(v4 >> 16n), Number(v4 & 0xffffn));
      } else {
        if (!/^[0-9a-f]{1,4}$/i.test(g)) return null;
        out.push(Number.parseInt(g, 16));
      }
    }
    return out;
  };
  const head = expand(split(halves[0] as string));
  const tail = halves.length === 2 ? expand(split(halves[1] as string)) : [];
  if (!head || !tail) return null;
  if (halves.length === 2) {
    const fill = 8 - head.length - tail.length;
    if (fill < 1) return null;
    groups = [...head, ...new Array<number>(fill).fill(0), ...tail].map(String);
  } else {
    if (head.length !== 8) return null;
    groups = head.map(String);
  }
  return groups.reduce((acc, g) => (acc << 16n) | BigInt(g), 0n);
}

/** The address a host names, in any form, or null when the host is a name to resolve. */
export function parseIp(host: string): IpAddress | null {
  const v6 = host.includes(":") ? parseIpv6(host) : null;
  if (v6 !== null) return { family: 6, value: v6 };
  const v4 = parseIpv4(host);
  return v4 === null ? null : { family: 4, value: v4 };
}

export function formatIp(ip: IpAddress): string {
  if (ip.family === 4) return [24n, 16n, 8n, 0n].map((s) => String((ip.value >> s) & 0xffn)).join(".");
  const groups: string[] = [];
  for (let s = 112n; s >= 0n; s -= 16n) groups.push(((ip.value >> s) & 0xffffn).toString(16));
  return groups.join(":");
}

/** A network in CIDR form (`10.0.0.0/8`, `fc00::/7`). */
export interface Network {
  family: 4 | 6;
  base: bigint;
  bits: number;
  label: string;
}

export function parseNetwork(text: string): Network | null {
  const [addr, bitsText] = text.trim().split("/");
  const ip = addr === undefined ? null : parseIp(addr);
  if (!ip) return null;
  const width = ip.family === 4 ? 32 : 128;
  const bits = bitsText === undefined ? width : Number(bitsText);
  if (!Number.isInteger(bits) || bits < 0 || bits > width) return null;
  return { family: ip.family, base: ip.value, bits, label: text.trim() };
}

export function inNetwork(ip: IpAddress, net: Network): boolean {
  if (ip.family !== net.family) return false;
  const width = ip.family === 4 ? 32n : 128n;
  const shift = width - BigInt(net.bits);
  return ip.value >> shift === net.base >> shift;
}

const net = (text: string, label: string): Network => ({ ...(parseNetwork(text) as Network), label });

/**
 * Where a webhook may not go unless the operator allows the network: this host, private networks,
 * link-local (where cloud metadata services answer), CGNAT, multicast and reserved ranges, and
 * IPv6 forms that carry an IPv4 address (mapped, NAT64, compatible). Sources: RFC 6890's special-
 * purpose registries, AWS's IMDS addresses (169.254.169.254, fd00:ec2::254).
 */
export const FORBIDDEN_NETWORKS: readonly Network[] = [
  net("0.0.0.0/8", "this network"),
  net("10.0.0.0/8", "private"),
  net("100.64.0.0/10", "carrier-grade NAT"),
  net("127.0.0.0/8", "loopback"),
  net("169.254.0.0/16", "link-local (cloud metadata)"),
  net("172.16.0.0/12", "private"),
  net("192.0.0.0/24", "IETF protocol assignments"),
  net("192.0.2.0/24", "documentation"),
  net("192.168.0.0/16", "private"),
  net("198.18.0.0/15", "benchmarking"),
  net("198.51.100.0/24", "documentation"),
  net("203.0.113.0/24", "documentation"),
  net("224.0.0.0/4", "multicast"),
  net("240.0.0.0/4", "reserved"),
  net("::/128", "unspecified"),
  net("::1/128", "loopback"),
  net("::/96", "IPv4-compatible"),
  net("::ffff:0:0/96", "IPv4-mapped"),
  net("64:ff9b::/96", "NAT64"),
  net("64:ff9b:1::/48", "NAT64"),
  net("100::/64", "discard"),
  net("2001::/23", "IETF protocol assignments"),
  net("2001:db8::/32", "documentation"),
  net("2002::/16", "6to4"),
  net("fc00::/7", "unique-local (cloud metadata)"),
  net("fe80::/10", "link-local"),
  net("fec0::/10", "site-local"),
  net("ff00::/8", "multicast"),
];

/**
 * Why a webhook may not reach `ip` (the forbidden network's label), or null when it may. A network
 * in `allowed` lifts the refusal for the addresses inside it (the operator's private receivers,
 * tests on loopback).
 */
export function refusedAddress(ip: IpAddress, allowed: readonly Network[]): string | null {
  if (allowed.some((n) => inNetwork(ip, n))) return null;
  const hit = FORBIDDEN_NETWORKS.find((n) => inNetwork(ip, n));
  return hit ? `${formatIp(ip)} is a ${hit.label} address` : null;
}
