/**
 * `memq audit`'s token counter: byte-pair encoding written here from tiktoken's algorithm, over
 * the rank files js-tiktoken ships (data only: its encoder is not used). memq counts with
 * gpt-tokenizer, so a defect in either shows up as a difference. Not js-tiktoken's `encode`: its
 * merge loop rescans every pair after each merge, so one long piece (4,096 spaces) took 10 s and
 * 16,384 took 150 s; the heap below takes O(n log n).
 *
 * Algorithm (openai/tiktoken `src/lib.rs`, `byte_pair_encode`): the text is split into pieces by
 * the encoding's `pat_str` (JavaScript `u` flag; special-token text counts as plain text); a piece
 * that is a token costs 1; otherwise its bytes start as one part each and, while any two
 * neighbouring parts join into a token, the pair whose joined token has the lowest rank (the
 * leftmost among equal ranks) is joined. The piece costs its number of parts.
 */

/** A rank file as js-tiktoken ships it (`js-tiktoken/ranks/<encoding>`). */
export interface RankFile {
  /** Pre-tokenisation expression. */
  readonly pat_str: string;
  /** Lines `<ignored> <first rank> <base64 token> <base64 token> ...`, ranks consecutive. */
  readonly bpe_ranks: string;
}

/** Counts the tokens of a text with one encoding. */
export type TokenCount = (text: string) => number;

/**
 * A counter for `file`'s encoding.
 * @throws SyntaxError when `pat_str` is not a valid JavaScript `u` expression.
 */
export function createTokenCount(file: RankFile): TokenCount {
  /** Token bytes as a latin1 string (one character per byte) -> rank. */
  const ranks = new Map<string, number>();
  for (const line of file.bpe_ranks.split('\n')) {
    if (line === '') continue;
    const [, first, ...tokens] = line.split(' ');
    const base = Number.parseInt(first ?? '', 10);
    tokens.forEach((token, i) =>
      ranks.set(Buffer.from(token, 'base64').toString('latin1'), base + i),
    );
  }
  const pieces = new RegExp(file.pat_str, 'gu');
  return (text) => {
    let count = 0;
    for (const match of text.matchAll(pieces)) {
      const bytes = Buffer.from(match[0], 'utf8').toString('latin1');
      count += ranks.has(bytes) ? 1 : mergedParts(bytes, ranks);
    }
    return count;
  };
}

/** A min-heap of [rank, start, version] entries, ordered by rank then start. */
class PairHeap {
  private readonly items: Array<[number, number, number]> = [];
  get size(): number {
    return this.items.length;
  }
  push(item: [number, number, number]): void {
    const items = this.items;
    items.push(item);
    let i = items.length - 1;
    while (i > 0) {
      const parent = (i - 1) >> 1;
      if (!less(items[i]!, items[parent]!)) break;
      [items[i], items[parent]] = [items[parent]!, items[i]!];
      i = parent;
    }
  }
  pop(): [number, number, number] | undefined {
    const items = this.items;
    const top = items[0];
    const last = items.pop();
    if (items.length > 0 && last !== undefined) {
      items[0] = last;
      let i = 0;
      for (;;) {
        const l = 2 * i + 1;
        const r = l + 1;
        let m = i;
        if (l < items.length && less(items[l]!, items[m]!)) m = l;
        if (r < items.length && less(items[r]!, items[m]!)) m = r;
        if (m === i) break;
        [items[i], items[m]] = [items[m]!, items[i]!];
        i = m;
      }
    }
    return top;
  }
}

const less = (a: [number, number, number], b: [number, number, number]) =>
  a[0] < b[0] || (a[0] === b[0] && a[1] < b[1]);

/** Parts left of `bytes` (latin1, one character per byte) after the merges. */
function mergedParts(bytes: string, ranks: ReadonlyMap<string, number>): number {
  const n = bytes.length;
  // Parts as a linked list over start offsets: part at `s` spans s .. next[s].
  const next = new Int32Array(n + 1);
  const prev = new Int32Array(n + 1);
  const version = new Int32Array(n + 1);
  for (let i = 0; i <= n; i++) {
    next[i] = i + 1;
    prev[i] = i - 1;
  }
  const heap = new PairHeap();
  const offer = (start: number) => {
    const middle = next[start]!;
    if (start < 0 || middle >= n) return;
    const rank = ranks.get(bytes.slice(start, next[middle]));
    if (rank !== undefined) heap.push([rank, start, version[start]!]);
  };
  for (let i = 0; i < n - 1; i++) offer(i);
  let parts = n;
  while (heap.size > 0) {
    const [, start, seen] = heap.pop()!;
    if (seen !== version[start]) continue;
    const middle = next[start]!;
    if (middle >= n) continue;
    // Join `start` and `middle`: `start` now ends where `middle` ended.
    next[start] = next[middle]!;
    if (next[middle]! <= n) prev[next[middle]!] = start;
    version[middle]! += 1;
    version[start] += 1;
    parts -= 1;
    offer(start);
    const before = prev[start]!;
    if (before >= 0) {
      version[before]! += 1;
      offer(before);
    }
  }
  return parts;
}

/**
 * A stored message as the audit reads it from Redis (parsed JSON, not checked by memq's schema):
 * the fields that cost tokens.
 */
export interface AuditMessage {
  /** `system`, `developer`, `user`, `assistant` or `tool`. */
  readonly role: string;
  /** A string, a list of `{type: 'text', text}` / `{type: 'image_url', image_url}` parts, or null. */
  readonly content: unknown;
  /** Optional participant name. */
  readonly name?: unknown;
  /** An assistant message's `[{id, type, function: {name, arguments}}]`. */
  readonly tool_calls?: unknown;
  /** A tool message's answered call id. */
  readonly tool_call_id?: unknown;
}

/** Counts the tokens of one stored message. */
export type MessageTokenCount = (message: AuditMessage) => number;

/**
 * The audit's statement of memq's counting rules (docs/decisions.md, "Tokens"), written from
 * their sources rather than from memq's code (src/tokens/counter.ts, image-tokens.ts):
 * - OpenAI's cookbook "How to count tokens with tiktoken": 3 per message, the role's tokens, a
 *   name's tokens + 1;
 * - a string content's tokens; a list's text parts each counted and summed;
 * - an image part, by OpenAI's vision guide ("Calculating costs"): 85 for `detail: low`; else
 *   85 + 170 per 512 px tile of the image after fitting it in 2048 x 2048 and bringing its
 *   shortest side down to 768 (never up; sides rounded down, at least 1); the size read from a
 *   base64 `data:` URL's first 65,536 bytes (PNG, GIF, WebP, JPEG); 1,445 when unknown;
 * - each tool call: its function name's and arguments' tokens + 7; a `tool_call_id`: its tokens.
 */
const AUDIT_RULES = {
  perMessage: 3,
  perName: 1,
  perToolCall: 7,
  lowDetail: 85,
  imageBase: 85,
  perTile: 170,
  tile: 512,
  fit: 2048,
  shortSide: 768,
  unknownImage: 85 + 170 * 8,
  headerBytes: 65_536,
} as const;

/**
 * A message counter for `file`'s encoding by {@link AUDIT_RULES}.
 * @throws TypeError (from the returned function) naming the field when a message's content,
 *   parts, tool calls, name or tool_call_id have a shape memq never stores.
 */
export function createMessageCount(file: RankFile): MessageTokenCount {
  const count = createTokenCount(file);
  const text = (value: unknown, field: string): number => {
    if (typeof value !== 'string') throw new TypeError(`${field}: expected a string`);
    return count(value);
  };
  return (message) => {
    let tokens = AUDIT_RULES.perMessage + text(message.role, 'role');
    if (message.name !== undefined) tokens += text(message.name, 'name') + AUDIT_RULES.perName;
    const { content } = message;
    if (typeof content === 'string') tokens += count(content);
    else if (Array.isArray(content)) {
      content.forEach((part: unknown, i) => {
        const p = (part ?? {}) as { type?: unknown; text?: unknown; image_url?: unknown };
        if (p.type === 'text') tokens += text(p.text, `content[${i}].text`);
        else if (p.type === 'image_url') {
          const image = (p.image_url ?? {}) as { url?: unknown; detail?: unknown };
          if (typeof image.url !== 'string')
            throw new TypeError(`content[${i}].image_url.url: expected a string`);
          tokens += auditImageTokens(image.url, image.detail);
        } else throw new TypeError(`content[${i}].type: expected text or image_url`);
      });
    } else if (content !== null) {
      throw new TypeError('content: expected a string, a list of parts or null');
    }
    if (message.tool_calls !== undefined) {
      if (!Array.isArray(message.tool_calls)) throw new TypeError('tool_calls: expected a list');
      message.tool_calls.forEach((call: unknown, i) => {
        const fn = ((call ?? {}) as { function?: { name?: unknown; arguments?: unknown } })
          .function;
        tokens +=
          text(fn?.name, `tool_calls[${i}].function.name`) +
          text(fn?.arguments, `tool_calls[${i}].function.arguments`) +
          AUDIT_RULES.perToolCall;
      });
    }
    if (message.tool_call_id !== undefined) tokens += text(message.tool_call_id, 'tool_call_id');
    return tokens;
  };
}

/** An image part's tokens by {@link AUDIT_RULES}. */
export function auditImageTokens(url: string, detail: unknown): number {
  if (detail === 'low') return AUDIT_RULES.lowDetail;
  const size = auditImageSize(url);
  if (size === undefined) return AUDIT_RULES.unknownImage;
  let [w, h] = size;
  const longest = Math.max(w, h);
  if (longest > AUDIT_RULES.fit) {
    const to = (side: number) =>
      side === longest
        ? AUDIT_RULES.fit
        : Math.max(1, Math.floor((side * AUDIT_RULES.fit) / longest));
    [w, h] = [to(w), to(h)];
  }
  const shortest = Math.min(w, h);
  if (shortest > AUDIT_RULES.shortSide) {
    const to = (side: number) =>
      side === shortest
        ? AUDIT_RULES.shortSide
        : Math.max(1, Math.floor((side * AUDIT_RULES.shortSide) / shortest));
    [w, h] = [to(w), to(h)];
  }
  const tiles = Math.ceil(w / AUDIT_RULES.tile) * Math.ceil(h / AUDIT_RULES.tile);
  return AUDIT_RULES.imageBase + AUDIT_RULES.perTile * tiles;
}

/**
 * `[width, height]` of a base64 `data:` URL's image from its first {@link AUDIT_RULES}
 * `headerBytes` bytes, or undefined (not a base64 data URL; a prefix that is not plain base64;
 * not PNG, GIF, WebP or JPEG; the size beyond the bytes read; a zero side).
 */
export function auditImageSize(url: string): [number, number] | undefined {
  const header = /^data:([^,]*),/i.exec(url);
  if (!header || !/;base64$/i.test(header[1]!)) return undefined;
  const payload = url.slice(header[0].length);
  const prefix = payload.slice(0, Math.ceil(AUDIT_RULES.headerBytes / 3) * 4);
  const padded = /^[A-Za-z0-9+/]*(={0,2})$/.exec(prefix);
  // Padding only at the very end of the payload.
  if (!padded || (padded[1] !== '' && prefix.length !== payload.length)) return undefined;
  const bytes = new Uint8Array(Buffer.from(prefix, 'base64')).subarray(0, AUDIT_RULES.headerBytes);
  const size = pngSize(bytes) ?? gifSize(bytes) ?? webpSize(bytes) ?? jpegSize(bytes);
  return size && size[0] > 0 && size[1] > 0 ? size : undefined;
}

const latin1 = (b: Uint8Array, from: number, to: number) =>
  to <= b.length ? String.fromCharCode(...b.subarray(from, to)) : '';
const be16 = (b: Uint8Array, i: number) => (b[i]! << 8) | b[i + 1]!;
const le16 = (b: Uint8Array, i: number) => b[i]! | (b[i + 1]! << 8);
const le24 = (b: Uint8Array, i: number) => le16(b, i) + b[i + 2]! * 65_536;

function pngSize(b: Uint8Array): [number, number] | undefined {
  if (latin1(b, 0, 8) !== '\x89PNG\r\n\x1a\n' || latin1(b, 12, 16) !== 'IHDR' || b.length < 24)
    return undefined;
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  return [view.getUint32(16), view.getUint32(20)];
}

function gifSize(b: Uint8Array): [number, number] | undefined {
  const magic = latin1(b, 0, 6);
  if ((magic !== 'GIF87a' && magic !== 'GIF89a') || b.length < 10) return undefined;
  return [le16(b, 6), le16(b, 8)];
}

function webpSize(b: Uint8Array): [number, number] | undefined {
  if (latin1(b, 0, 4) !== 'RIFF' || latin1(b, 8, 12) !== 'WEBP') return undefined;
  switch (latin1(b, 12, 16)) {
    case 'VP8 ':
      if (b.length < 30 || b[23] !== 0x9d || b[24] !== 0x01 || b[25] !== 0x2a) return undefined;
      return [le16(b, 26) & 0x3fff, le16(b, 28) & 0x3fff];
    case 'VP8L': {
      if (b.length < 25 || b[20] !== 0x2f) return undefined;
      // 14 bits of width - 1, then 14 bits of height - 1, least significant bit first.
      const width = 1 + (b[21]! | ((b[22]! & 0x3f) << 8));
      const height = 1 + ((b[22]! >> 6) | (b[23]! << 2) | ((b[24]! & 0x0f) << 10));
      return [width, height];
    }
    case 'VP8X':
      if (b.length < 30) return undefined;
      return [le24(b, 24) + 1, le24(b, 27) + 1];
    default:
      return undefined;
  }
}

function jpegSize(b: Uint8Array): [number, number] | undefined {
  if (b[0] !== 0xff || b[1] !== 0xd8) return undefined;
  let i = 2;
  while (i < b.length) {
    if (b[i] !== 0xff) return undefined;
    while (b[i] === 0xff) i += 1; // fill bytes
    if (i >= b.length) return undefined;
    const marker = b[i]!;
    i += 1;
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) continue; // no length
    if (marker === 0xd9 || marker === 0xda) return undefined; // end of image, start of scan
    if (i + 2 > b.length) return undefined;
    const isFrame = marker >= 0xc0 && marker <= 0xcf && ![0xc4, 0xc8, 0xcc].includes(marker);
    if (isFrame) {
      if (i + 7 > b.length) return undefined;
      return [be16(b, i + 5), be16(b, i + 3)];
    }
    const length = be16(b, i);
    if (length < 2) return undefined;
    i += length;
  }
  return undefined;
}
