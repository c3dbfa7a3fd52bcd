/**
 * The user's own mail as replay input: an mbox file or a folder of `.eml` files, read into raw
 * e-mails that {@link parseEmail} handles exactly like the built-in corpus.
 *
 * mbox variant handled (RFC 4155 and the mboxrd convention): every line that begins with the five
 * bytes `From ` starts a message (that line, the "From_" line, is not part of it); a line of one or
 * more `>` followed by `From ` loses one `>` (mboxrd unescaping). mboxo files are read the same
 * way: mboxo escapes only `From ` as `>From ` and cannot tell an original `>From ` line from an
 * escaped one, so such a line comes back as `From `. One empty line before each `From_` line (and
 * at the end of the file) is the separator and is dropped. Line endings (LF or CRLF) are kept as
 * they are. Not handled: mboxcl/mboxcl2 `Content-Length:` framing (a body line starting `From `
 * that such a writer left unescaped starts a new message here).
 *
 * No npm package was taken for this (checked: node-mbox 2.0.0, mbox-reader 1.2.0 — three
 * releases, the last code change years old, an unused pinned libmime dependency — and
 * mbox-parser 1.0.1, which parses with mailparser): the format is a few rules, stated above.
 */
import { readdirSync, readFileSync, statSync } from 'node:fs';
import path from 'node:path';
import { PayloadError } from '../core/errors.js';

/** One raw e-mail of an mbox file or `.eml` folder. */
export interface RawEmail {
  /**
   * `<file or folder name>/<item>`: the mbox file's base name and the message's 1-based position
   * as 6 digits (`inbox.mbox/000042`), or the folder's base name and the file name
   * (`mail/a.eml`). Stable as long as the file is only appended to or the folder only added to.
   */
  source: string;
  /** The RFC 822 message as bytes; each MIME part is decoded by its own charset when parsed. */
  raw: Uint8Array;
}

const LF = 0x0a;
const CR = 0x0d;
const GT = 0x3e;
const FROM_ = Buffer.from('From ', 'latin1');

/** True when `bytes[start..]` begins with `From `. */
function startsWithFrom(bytes: Uint8Array, start: number): boolean {
  if (start + FROM_.length > bytes.length) return false;
  for (let i = 0; i < FROM_.length; i++) if (bytes[start + i] !== FROM_[i]) return false;
  return true;
}

/** True for an empty line: nothing, or a lone CR, between `start` and `end` (the LF or EOF). */
function isEmptyLine(bytes: Uint8Array, start: number, end: number): boolean {
  return end === start || (end === start + 1 && bytes[start] === CR);
}

/**
 * Splits an mbox file into its messages (the variant is described at the top of this file).
 *
 * @param bytes The whole file.
 * @param name What error messages call the file.
 * @returns The messages' bytes in file order; none for an empty (or blank) file.
 * @throws PayloadError when the first non-blank line is not a `From ` line (not an mbox file).
 */
export function splitMbox(bytes: Uint8Array, name = 'mbox'): Uint8Array[] {
  const messages: Uint8Array[] = [];
  /** Lines of the current message: [start, end) byte ranges, end past the LF when there is one. */
  let lines: Array<[number, number, boolean]> = [];
  let open = false;
  const close = () => {
    if (!open) return;
    // The empty line a writer puts before the next From_ line (or at the end) is not the message's.
    const last = lines.at(-1);
    if (last !== undefined && last[2] === false) {
      const [start, end] = last;
      const contentEnd = bytes[end - 1] === LF ? end - 1 : end;
      if (isEmptyLine(bytes, start, contentEnd)) lines.pop();
    }
    messages.push(
      Buffer.concat(
        lines.map(([start, end, escaped]) => bytes.subarray(escaped ? start + 1 : start, end)),
      ),
    );
    lines = [];
  };
  let position = 0;
  while (position < bytes.length) {
    const newline = bytes.indexOf(LF, position);
    const end = newline === -1 ? bytes.length : newline + 1;
    const contentEnd = newline === -1 ? bytes.length : newline;
    if (startsWithFrom(bytes, position)) {
      close();
      open = true;
    } else if (!open) {
      if (!isEmptyLine(bytes, position, contentEnd)) {
        throw new PayloadError(
          `${name}: not an mbox file: the first non-blank line does not start with "From " (expected an mbox file, mboxrd or mboxo: each message starts with a "From " line)`,
          { details: { file: name } },
        );
      }
    } else {
      let gts = 0;
      while (bytes[position + gts] === GT) gts++;
      lines.push([position, end, gts > 0 && startsWithFrom(bytes, position + gts)]);
    }
    position = end;
  }
  close();
  return messages;
}

/**
 * Reads an mbox file's messages ({@link splitMbox}).
 * @throws PayloadError when the file cannot be read or is not an mbox file.
 */
export function loadMbox(file: string): RawEmail[] {
  const base = path.basename(file);
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (error) {
    throw new PayloadError(
      `--mbox ${file}: cannot read the file: ${error instanceof Error ? error.message : String(error)}`,
      { details: { file }, cause: error },
    );
  }
  return splitMbox(bytes, `--mbox ${file}`).map((raw, i) => ({
    source: `${base}/${String(i + 1).padStart(6, '0')}`,
    raw,
  }));
}

/**
 * Reads every `.eml` file (the extension in any case; regular files, symbolic links followed) of
 * a folder, not its subfolders, in file-name order (UTF-16 code units).
 * @throws PayloadError when the folder cannot be read or holds no `.eml` file.
 */
export function loadEmlFolder(dir: string): RawEmail[] {
  const base = path.basename(path.resolve(dir));
  let names: string[];
  try {
    names = readdirSync(dir)
      .filter((n) => n.toLowerCase().endsWith('.eml') && statSync(path.join(dir, n)).isFile())
      .sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
  } catch (error) {
    throw new PayloadError(
      `--eml ${dir}: cannot read the folder: ${error instanceof Error ? error.message : String(error)}`,
      { details: { dir }, cause: error },
    );
  }
  if (names.length === 0) {
    throw new PayloadError(`--eml ${dir}: expected a folder with .eml files, found none`, {
      details: { dir },
    });
  }
  return names.map((n) => ({ source: `${base}/${n}`, raw: readFileSync(path.join(dir, n)) }));
}
