/**
 * Exact token counts of text whose pre-tokenizer pieces may be arbitrarily long, in
 * O(n log n) time for n UTF-8 bytes (see {@link countPieces}). The token counter
 * (`counter.ts`) uses it for stretches of text where no cut is provably exact, such as a
 * megabyte of one "word", one whitespace run or unspaced CJK text: the tokenizer sees each as a
 * single piece, and the textbook byte-pair merge (gpt-tokenizer's and js-tiktoken's), which
 * rescans the piece for its lowest-ranked pair before every merge, is quadratic in its length.
 */

/**
 * One encoding's mergeable ranks in gpt-tokenizer's `bpeRanks/<encoding>` layout: index = rank
 * (= token id), value = the token's text (its UTF-8 bytes are the token) or, for a token that is
 * not valid UTF-8, its bytes; holes for unused ranks.
 */
export type RankList = readonly (string | readonly number[] | undefined)[];

/** A rank table prepared for merging (see {@link createMergeTable}). */
export interface MergeTable {
  /** Rank of every token, keyed by its bytes as a latin1 string (one character per byte). */
  readonly ranks: ReadonlyMap<string, number>;
  /** Rank of the token of each single byte (every byte is a token in the shipped encodings). */
  readonly byteRank: Int32Array;
  /** Rank of each two-byte token, indexed `first << 8 | second`; -1 where none exists. */
  readonly bytePairRank: Int32Array;
  /** Cache of merged ranks by the ranks of two adjacent parts (see {@link mergedRank}). */
  readonly pairCache: PairCache;
}

/** Open-addressing cache: (left rank, right rank) -> rank of their concatenation, or -1. */
interface PairCache {
  readonly left: Int32Array;
  readonly right: Int32Array;
  readonly merged: Int32Array;
  used: number;
}

/**
 * Entries of a table's {@link PairCache}: 2^18 (3 MiB of Int32Arrays). When 70 % full it is
 * cleared; distinct adjacent-token pairs of real text stay far below that between clears.
 */
const PAIR_CACHE_SLOTS = 2 ** 18;
/** Ranks and positions share one heap key: rank * 2^32 + position (exact below 2^53). */
const POSITION_SPAN = 2 ** 32;
/** Largest rank list accepted, so a heap key stays below 2^53 (o200k_base has 200,019). */
const MAX_RANKS = 2 ** 21;

/**
 * A {@link MergeTable} of `ranks` (0.3-0.8 s and 15-30 MB of RSS for o200k_base, measured here:
 * built only when a counter first needs it).
 * @throws RangeError when `ranks` has more than 2^21 entries or lacks a single-byte token.
 */
export function createMergeTable(ranks: RankList): MergeTable {
  if (ranks.length > MAX_RANKS) {
    throw new RangeError(`rank list: expected at most ${MAX_RANKS} ranks, got ${ranks.length}`);
  }
  const byBytes = new Map<string, number>();
  for (let rank = 0; rank < ranks.length; rank++) {
    const token = ranks[rank];
    if (token === undefined) continue;
    byBytes.set(
      typeof token === 'string' ? latin1Bytes(token) : String.fromCharCode(...token),
      rank,
    );
  }
  const byteRank = new Int32Array(256);
  for (let byte = 0; byte < 256; byte++) {
    const rank = byBytes.get(String.fromCharCode(byte));
    if (rank === undefined) {
      throw new RangeError(`rank list: byte ${byte} has no token; expected every byte to have one`);
    }
    byteRank[byte] = rank;
  }
  const bytePairRank = new Int32Array(256 * 256);
  for (let first = 0; first < 256; first++) {
    for (let second = 0; second < 256; second++) {
      bytePairRank[(first << 8) | second] = byBytes.get(String.fromCharCode(first, second)) ?? -1;
    }
  }
  return {
    ranks: byBytes,
    byteRank,
    bytePairRank,
    pairCache: {
      left: new Int32Array(PAIR_CACHE_SLOTS).fill(-1),
      right: new Int32Array(PAIR_CACHE_SLOTS),
      merged: new Int32Array(PAIR_CACHE_SLOTS),
      used: 0,
    },
  };
}

/** `text`'s UTF-8 bytes as a latin1 string (lone surrogates become U+FFFD, as TextEncoder does). */
export function latin1Bytes(text: string): string {
  // ASCII text (as many bytes as UTF-16 units) is its own latin1 string.
  if (Buffer.byteLength(text, 'utf8') === text.length) return text;
  return Buffer.from(text, 'utf8').toString('latin1');
}

/**
 * Work units (bytes read or merges done) between two yields of {@link countPieces}, so an
 * asynchronous caller can check its clock and give the event loop a turn.
 */
export const WORK_PER_YIELD = 4096;

/**
 * Tokens of `text` under an encoding whose pre-tokenizer is `pattern` (a regex with flags `gu`,
 * as js-tiktoken compiles `pat_str`) and whose ranks are `table`: the tokenizer's own algorithm,
 * piece by piece: a piece that is a token costs 1; any other is merged ({@link PieceMerge}).
 * Special-token text is plain text. A generator yielding after every {@link WORK_PER_YIELD}
 * units of work; its return value is the count. Time: linear in `text` for the regex (each
 * shipped pattern matches a piece in time linear in the piece, measured up to 1 MiB pieces)
 * plus O(b log b) for merging b bytes.
 */
export function* countPieces(
  text: string,
  pattern: RegExp,
  table: MergeTable,
): Generator<void, number, void> {
  const splitter = new RegExp(pattern.source, pattern.flags);
  let tokens = 0;
  let work = 0;
  for (let match = splitter.exec(text); match !== null; match = splitter.exec(text)) {
    const bytes = latin1Bytes(match[0]);
    if (table.ranks.has(bytes)) tokens += 1;
    else if (bytes.length <= SHARED_ARRAY_BYTES) tokens += mergeSmall(bytes, table);
    else tokens += yield* mergeCount(bytes, table);
    work += bytes.length;
    if (work >= WORK_PER_YIELD) {
      work = 0;
      yield;
    }
  }
  return tokens;
}

/** Working arrays of one merge (see {@link PieceMerge}), indexed by part start (byte offset). */
interface MergeArrays {
  /** Start of the next part (the byte after this part's end). */
  readonly next: Int32Array;
  /** Start of the previous part, -1 for the first. */
  readonly prev: Int32Array;
  /** Rank of the token the part is. */
  readonly rank: Int32Array;
  /** Heap key of the pair starting at this part: rank of the merged pair * 2^32 + start. */
  readonly key: Float64Array;
  /** Binary min-heap of part starts, ordered by {@link MergeArrays.key}. */
  readonly heap: Int32Array;
  /** Index of the part in {@link MergeArrays.heap}, -1 when its pair merges to no token. */
  readonly slot: Int32Array;
}

/** Pieces up to this many bytes are merged in shared arrays, in one go (never yielding). */
const SHARED_ARRAY_BYTES = WORK_PER_YIELD;
let shared: MergeArrays | undefined;

const mergeArrays = (bytes: number): MergeArrays => ({
  next: new Int32Array(bytes),
  prev: new Int32Array(bytes),
  rank: new Int32Array(bytes),
  key: new Float64Array(bytes),
  heap: new Int32Array(bytes),
  slot: new Int32Array(bytes),
});

/**
 * Tokens of one piece (`bytes`, a latin1 string of UTF-8 bytes): {@link PieceMerge} run to the
 * end, yielding every {@link WORK_PER_YIELD} merges.
 */
export function* mergeCount(bytes: string, table: MergeTable): Generator<void, number, void> {
  if (bytes.length <= SHARED_ARRAY_BYTES) return mergeSmall(bytes, table);
  const merge = new PieceMerge(bytes, table, mergeArrays(bytes.length));
  while (!merge.run(WORK_PER_YIELD)) yield;
  return merge.parts;
}

/** Tokens of a piece of at most {@link SHARED_ARRAY_BYTES} bytes, merged in the shared arrays. */
function mergeSmall(bytes: string, table: MergeTable): number {
  if (bytes.length < 2) return bytes.length;
  const merge = new PieceMerge(bytes, table, (shared ??= mergeArrays(SHARED_ARRAY_BYTES)));
  merge.run(Infinity);
  return merge.parts;
}

/**
 * One piece's byte-pair merge, exactly as tiktoken merges (`_byte_pair_merge`; js-tiktoken's and
 * gpt-tokenizer's `bytePairMerge`): start from single bytes, repeatedly merge the adjacent pair
 * whose concatenation has the lowest rank, the leftmost on a tie, until no adjacent pair is a
 * token. Here the pairs sit in a binary heap keyed (rank, start) instead of being rescanned: the
 * heap's minimum is the pair the scan picks (lowest rank, then lowest start = leftmost), and a
 * merge changes only the two pairs touching the merged part, so it costs O(log b) instead of
 * O(b) for b bytes. Memory: 28 bytes per byte of the piece, until it is counted.
 */
class PieceMerge {
  private readonly next: Int32Array;
  private readonly prev: Int32Array;
  private readonly rank: Int32Array;
  private readonly key: Float64Array;
  private readonly heap: Int32Array;
  private readonly slot: Int32Array;
  private heapSize = 0;
  /** Parts (tokens) so far; the piece's token count once {@link PieceMerge.run} returns true. */
  parts: number;

  constructor(
    private readonly bytes: string,
    private readonly table: MergeTable,
    arrays: MergeArrays,
  ) {
    ({
      next: this.next,
      prev: this.prev,
      rank: this.rank,
      key: this.key,
      heap: this.heap,
      slot: this.slot,
    } = arrays);
    const size = bytes.length;
    this.parts = size;
    const { next, prev, rank, key, heap, slot } = this;
    let heapSize = 0;
    for (let i = 0; i < size; i++) {
      next[i] = i + 1;
      prev[i] = i - 1;
      rank[i] = table.byteRank[bytes.charCodeAt(i)]!;
      slot[i] = -1;
      if (i + 1 < size) {
        const pair = table.bytePairRank[(bytes.charCodeAt(i) << 8) | bytes.charCodeAt(i + 1)]!;
        if (pair >= 0) {
          key[i] = pair * POSITION_SPAN + i;
          slot[i] = heapSize;
          heap[heapSize++] = i;
        }
      }
    }
    this.heapSize = heapSize;
    for (let at = (heapSize >> 1) - 1; at >= 0; at--) this.siftDown(at);
  }

  /** Does up to `maxMerges` merges; true when no adjacent pair is a token any more. */
  run(maxMerges: number): boolean {
    const { next, prev, rank, key, heap, slot, bytes, table } = this;
    const size = bytes.length;
    for (let merges = 0; this.heapSize > 0; merges++) {
      if (merges >= maxMerges) return false;
      const i = heap[0]!;
      const merged = Math.floor(key[i]! / POSITION_SPAN);
      const j = next[i]!;
      const k = next[j]!;
      if (slot[j]! >= 0) this.removeAt(slot[j]!);
      rank[i] = merged;
      next[i] = k;
      if (k < size) prev[k] = i;
      this.parts--;
      this.setPair(i, k < size ? mergedRank(table, bytes, i, next[k]!, merged, rank[k]!) : -1);
      const p = prev[i]!;
      if (p >= 0) this.setPair(p, mergedRank(table, bytes, p, k, rank[p]!, merged));
    }
    return true;
  }

  /** Sets the pair starting at part `i` to merge into rank `merged` (-1: into no token). */
  private setPair(i: number, merged: number): void {
    const at = this.slot[i]!;
    if (merged < 0) {
      if (at >= 0) this.removeAt(at);
      return;
    }
    const newKey = merged * POSITION_SPAN + i;
    if (at < 0) {
      this.key[i] = newKey;
      this.slot[i] = this.heapSize;
      this.heap[this.heapSize++] = i;
      this.siftUp(this.heapSize - 1);
      return;
    }
    const oldKey = this.key[i]!;
    this.key[i] = newKey;
    if (newKey < oldKey) this.siftUp(at);
    else this.siftDown(at);
  }

  private siftUp(at: number): void {
    const { heap, key, slot } = this;
    const part = heap[at]!;
    const partKey = key[part]!;
    while (at > 0) {
      const parentAt = (at - 1) >> 1;
      const parent = heap[parentAt]!;
      if (key[parent]! <= partKey) break;
      heap[at] = parent;
      slot[parent] = at;
      at = parentAt;
    }
    heap[at] = part;
    slot[part] = at;
  }

  private siftDown(at: number): void {
    const { heap, key, slot, heapSize } = this;
    const part = heap[at]!;
    const partKey = key[part]!;
    for (;;) {
      let child = 2 * at + 1;
      if (child >= heapSize) break;
      if (child + 1 < heapSize && key[heap[child + 1]!]! < key[heap[child]!]!) child++;
      const childPart = heap[child]!;
      if (key[childPart]! >= partKey) break;
      heap[at] = childPart;
      slot[childPart] = at;
      at = child;
    }
    heap[at] = part;
    slot[part] = at;
  }

  /** Removes the heap entry at `at`. */
  private removeAt(at: number): void {
    const { heap, slot } = this;
    slot[heap[at]!] = -1;
    const last = --this.heapSize;
    if (at === last) return;
    const moved = heap[last]!;
    heap[at] = moved;
    slot[moved] = at;
    this.siftUp(at);
    this.siftDown(slot[moved]);
  }
}

/**
 * Rank of the token `bytes[from, to)`, the concatenation of two adjacent parts whose tokens have
 * ranks `left` and `right`; -1 when it is no token.
 * A token's bytes are determined by its rank, so the pair of ranks keys the cache.
 */
function mergedRank(
  table: MergeTable,
  bytes: string,
  from: number,
  to: number,
  left: number,
  right: number,
): number {
  const cache = table.pairCache;
  const mask = PAIR_CACHE_SLOTS - 1;
  let at = (Math.imul(left, 0x9e3779b1) ^ Math.imul(right, 0x85ebca6b)) & mask;
  for (;;) {
    const cachedLeft = cache.left[at]!;
    if (cachedLeft === -1) break;
    if (cachedLeft === left && cache.right[at] === right) return cache.merged[at]!;
    at = (at + 1) & mask;
  }
  const merged = table.ranks.get(bytes.slice(from, to)) ?? -1;
  if (cache.used >= PAIR_CACHE_SLOTS * 0.7) {
    cache.left.fill(-1);
    cache.used = 0;
    at = (Math.imul(left, 0x9e3779b1) ^ Math.imul(right, 0x85ebca6b)) & mask;
  }
  cache.left[at] = left;
  cache.right[at] = right;
  cache.merged[at] = merged;
  cache.used++;
  return merged;
}
