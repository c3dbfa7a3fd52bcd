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
