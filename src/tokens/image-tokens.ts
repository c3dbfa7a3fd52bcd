/**
 * Tokens of an image part (`{type: 'image_url', image_url: {url, detail?}}`), by the rule OpenAI
 * publishes in its vision guide ("Images and vision", "Calculating costs",
 * https://platform.openai.com/docs/guides/images-vision): `detail: low` costs 85 tokens whatever
 * the image; `high` costs 85 + 170 per 512 px tile of the image scaled to fit a 2048 x 2048 square
 * and then to a shortest side of 768 px. memq never fetches a URL: an image's size is read only
 * from the header bytes of a `data:` URL ({@link imageSizeOfDataUrl}); an image of unknown size
 * is counted at the most the rule allows ({@link UNKNOWN_SIZE_IMAGE_TOKENS}) and marked estimated.
 * Pure: no I/O, bounded work per image.
 */
import type { ContentPart } from '../core/message.js';

/** Tokens of a `detail: low` image (the vision guide: "a budget of 85 tokens"). */
export const IMAGE_LOW_DETAIL_TOKENS = 85;
/** Tokens every `high` image costs on top of its tiles (the vision guide: "another 85 tokens"). */
export const IMAGE_BASE_TOKENS = 85;
/** Tokens per 512 px tile of a `high` image (the vision guide: "each of those squares costs 170"). */
export const IMAGE_TILE_TOKENS = 170;
/** Tile side, px. */
export const IMAGE_TILE_PX = 512;
/** First scaling: the image is scaled down to fit a square of this side, px. */
export const IMAGE_FIT_PX = 2048;
/** Second scaling: the image is scaled down so its shortest side is this long, px. */
export const IMAGE_SHORT_SIDE_PX = 768;
/**
 * Tokens of a `high` or `auto` image whose size memq cannot read (an `https:` URL, a `data:` URL
 * that is not base64 or not PNG, JPEG, GIF or WebP, or whose size is beyond
 * {@link IMAGE_HEADER_BYTES}): the most the rule gives any image, 85 + 170 x 8 = 1,445 (after the
 * two scalings an image is at most 768 x 2048 px, 2 x 4 tiles). An upper bound for the models
 * the guide's 85 / 170 figures apply to ({@link PUBLISHED_IMAGE_RULE_MODELS}); other models price
 * images differently (gpt-4o-mini far higher), and their image counts are marked estimated.
 */
export const UNKNOWN_SIZE_IMAGE_TOKENS = IMAGE_BASE_TOKENS + IMAGE_TILE_TOKENS * 8;
/**
 * The bytes of a `data:` URL's image memq decodes to find its size: the first 65,536 (the first
 * 87,384 base64 characters). PNG, GIF and WebP give their size in the first 30 bytes; a JPEG's
 * size (its SOF segment) may follow Exif and ICC segments, and one past this bound is unknown.
 */
export const IMAGE_HEADER_BYTES = 65_536;
/** Base64 characters holding {@link IMAGE_HEADER_BYTES} bytes (4 characters per 3 bytes, rounded up). */
const IMAGE_HEADER_CHARS = Math.ceil(IMAGE_HEADER_BYTES / 3) * 4;

/**
 * Model-name prefixes whose image costs are the vision guide's 85 / 170 figures (gpt-4o and the
 * GPT-4 Turbo vision models). The guide gives other figures for other models (gpt-4o-mini: 2,833
 * / 5,667; o1 / o3: 75 / 150; gpt-4.1-mini, gpt-4.1-nano, o4-mini: 32 px patches): for those memq
 * still counts images by the 85 / 170 rule, and marks the count estimated.
 */
const PUBLISHED_IMAGE_RULE_MODELS =
  /^(?:gpt-4o(?!-mini)|chatgpt-4o|gpt-4-turbo|gpt-4(?:-1106)?-vision)/;

/** True when `model`'s image costs are the figures {@link imageTokens} uses (see above). */
export function imageRuleIsPublishedFor(model: string): boolean {
  return PUBLISHED_IMAGE_RULE_MODELS.test(model);
}

/** An image's size in pixels, both >= 1. */
export interface ImageSize {
  /** Width, px. */
  readonly width: number;
  /** Height, px. */
  readonly height: number;
}

/** An image part's tokens and whether the vision guide's rule gives them exactly. */
export interface ImageTokens {
  /** Tokens, integer > 0. */
  readonly tokens: number;
  /**
   * True for `detail: low`, and for `detail: high` with a size read from the URL. False for
   * `auto` (absent): OpenAI does not publish how the model chooses, and memq counts it as `high`,
   * the larger of the two, as LangChain's `get_num_tokens_from_messages` does; and false for an
   * image of unknown size ({@link UNKNOWN_SIZE_IMAGE_TOKENS}).
   */
  readonly exact: boolean;
}

/**
 * Tokens of a `high` image of `size` (the vision guide's "Calculating costs"): if its longest side
 * is over 2,048 px it is scaled to 2,048 (the other side scaled alike, rounded down, at least 1);
 * then if its shortest side is over 768 px it is scaled to 768 (likewise); it costs 85 + 170 per
 * 512 px tile covering it. Images are never scaled up (as LangChain's `_count_image_tokens`). The
 * guide's examples: 1024 x 1024 -> 765 tokens, 2048 x 4096 -> 1,105.
 */
export function highDetailImageTokens({ width, height }: ImageSize): number {
  let w = width;
  let h = height;
  const scale = (side: number, from: number, to: number) =>
    Math.max(1, Math.floor((side * to) / from));
  if (Math.max(w, h) > IMAGE_FIT_PX) {
    if (w >= h) [w, h] = [IMAGE_FIT_PX, scale(h, w, IMAGE_FIT_PX)];
    else [w, h] = [scale(w, h, IMAGE_FIT_PX), IMAGE_FIT_PX];
  }
  if (Math.min(w, h) > IMAGE_SHORT_SIDE_PX) {
    if (w <= h) [w, h] = [IMAGE_SHORT_SIDE_PX, scale(h, w, IMAGE_SHORT_SIDE_PX)];
    else [w, h] = [scale(w, h, IMAGE_SHORT_SIDE_PX), IMAGE_SHORT_SIDE_PX];
  }
  return (
    IMAGE_BASE_TOKENS +
    IMAGE_TILE_TOKENS * Math.ceil(w / IMAGE_TILE_PX) * Math.ceil(h / IMAGE_TILE_PX)
  );
}

/**
 * The tokens of an image part: `detail: low` {@link IMAGE_LOW_DETAIL_TOKENS}; `high` and `auto`
 * (or absent) {@link highDetailImageTokens} of the size {@link imageSizeOfDataUrl} reads, else
 * {@link UNKNOWN_SIZE_IMAGE_TOKENS}. Cost: at most {@link IMAGE_HEADER_BYTES} decoded.
 */
export function imageTokens(part: Extract<ContentPart, { type: 'image_url' }>): ImageTokens {
  const { url, detail } = part.image_url;
  if (detail === 'low') return { tokens: IMAGE_LOW_DETAIL_TOKENS, exact: true };
  const size = imageSizeOfDataUrl(url);
  if (!size) return { tokens: UNKNOWN_SIZE_IMAGE_TOKENS, exact: false };
  return { tokens: highDetailImageTokens(size), exact: detail === 'high' };
}

/**
 * The size of the image a `data:` URL holds, read from its header bytes, or undefined. Only
 * `data:<anything>;base64,<payload>` URLs are read (the scheme and `;base64` in any letter case;
 * the media type is not trusted, the bytes' signature decides); the payload's first 87,384
 * characters (or all of it, if shorter) must be standard base64 (`A-Z a-z 0-9 + /`, `=` only as
 * the payload's last one or two characters), else the size is unknown. Of the decoded bytes only
 * the first {@link IMAGE_HEADER_BYTES} are read:
 * - PNG (`89 50 4E 47 0D 0A 1A 0A`, then an `IHDR` chunk): width and height, big-endian 32-bit at
 *   bytes 16 and 20;
 * - GIF (`GIF87a` / `GIF89a`): the logical screen's width and height, little-endian 16-bit at 6
 *   and 8;
 * - WebP (`RIFF....WEBP`): the first chunk's: `VP8 ` (frame start code `9D 01 2A` at 23, 14-bit
 *   width and height at 26 and 28), `VP8L` (signature `2F` at 20, 14-bit width - 1 and height - 1
 *   packed from byte 21), `VP8X` (24-bit width - 1 and height - 1 at 24 and 27);
 * - JPEG (`FF D8`): the first start-of-frame segment (markers C0-CF but C4, C8 and CC; height
 *   and width big-endian 16-bit 5 and 7 bytes after the marker's `FF`), walking segments by their lengths
 *   (fill `FF` bytes skipped, RST and TEM markers standalone); a start of scan or end of image
 *   first, or a segment past the bytes read, leaves the size unknown.
 * A width or height of 0 is unknown too.
 */
export function imageSizeOfDataUrl(url: string): ImageSize | undefined {
  if (!/^data:/i.test(url)) return undefined;
  const comma = url.indexOf(',');
  if (comma < 0 || !/;base64$/i.test(url.slice(5, comma))) return undefined;
  const start = comma + 1;
  const end = Math.min(url.length, start + IMAGE_HEADER_CHARS);
  for (let i = start; i < end; i++) {
    const c = url.charCodeAt(i);
    const alphabet =
      (c >= 65 && c <= 90) || (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 43 || c === 47;
    if (alphabet) continue;
    // '=' only as the payload's last one or two characters.
    if (c === 61 && url.length - i <= 2 && (i === url.length - 1 || url.charCodeAt(i + 1) === 61))
      continue;
    return undefined;
  }
  const bytes = Buffer.from(url.slice(start, end), 'base64').subarray(0, IMAGE_HEADER_BYTES);
  const size = sizeOfImageBytes(bytes);
  return size && size.width > 0 && size.height > 0 ? size : undefined;
}

/** PNG's 8-byte signature. */
const PNG_SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];

/** The size an image's first bytes declare (see {@link imageSizeOfDataUrl}), or undefined. */
function sizeOfImageBytes(b: Buffer): ImageSize | undefined {
  const ascii = (at: number, text: string) =>
    b.length >= at + text.length && b.toString('latin1', at, at + text.length) === text;
  if (b.length >= 24 && PNG_SIGNATURE.every((x, i) => b[i] === x) && ascii(12, 'IHDR')) {
    return { width: b.readUInt32BE(16), height: b.readUInt32BE(20) };
  }
  if (b.length >= 10 && (ascii(0, 'GIF87a') || ascii(0, 'GIF89a'))) {
    return { width: b.readUInt16LE(6), height: b.readUInt16LE(8) };
  }
  if (ascii(0, 'RIFF') && ascii(8, 'WEBP')) return webpSize(b);
  if (b.length >= 2 && b[0] === 0xff && b[1] === 0xd8) return jpegSize(b);
  return undefined;
}

/** A WebP's size from its first chunk (see {@link imageSizeOfDataUrl}). */
function webpSize(b: Buffer): ImageSize | undefined {
  const chunk = b.length >= 16 ? b.toString('latin1', 12, 16) : '';
  if (chunk === 'VP8 ' && b.length >= 30) {
    if (b[23] !== 0x9d || b[24] !== 0x01 || b[25] !== 0x2a) return undefined;
    return { width: b.readUInt16LE(26) & 0x3fff, height: b.readUInt16LE(28) & 0x3fff };
  }
  if (chunk === 'VP8L' && b.length >= 25) {
    if (b[20] !== 0x2f) return undefined;
    const bits = b.readUInt32LE(21);
    return { width: (bits & 0x3fff) + 1, height: ((bits >>> 14) & 0x3fff) + 1 };
  }
  if (chunk === 'VP8X' && b.length >= 30) {
    return { width: b.readUIntLE(24, 3) + 1, height: b.readUIntLE(27, 3) + 1 };
  }
  return undefined;
}

/** A JPEG's size from its first start-of-frame segment (see {@link imageSizeOfDataUrl}). */
function jpegSize(b: Buffer): ImageSize | undefined {
  let at = 2;
  for (;;) {
    if (at >= b.length || b[at] !== 0xff) return undefined;
    while (at < b.length && b[at] === 0xff) at++;
    if (at >= b.length) return undefined;
    const marker = b[at]!;
    const segment = at + 1; // the length field
    if (marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) {
      at = segment;
      continue;
    }
    if (marker === 0xd9 || marker === 0xda) return undefined;
    if (segment + 2 > b.length) return undefined;
    const length = b.readUInt16BE(segment);
    const startOfFrame =
      marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (startOfFrame) {
      // length(2) precision(1) height(2) width(2)
      if (segment + 7 > b.length) return undefined;
      return { width: b.readUInt16BE(segment + 5), height: b.readUInt16BE(segment + 3) };
    }
    if (length < 2) return undefined;
    at = segment + length;
  }
}
