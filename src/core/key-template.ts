/**
 * Go-template-style memory key templates (docs/architecture.md, "Domain"; Compozy-compatible):
 * `support:{{ .conversation_id }}` rendered against the caller's context, then validated with the
 * instance key rule ({@link validateMemoryKey}).
 *
 * Only the subset memory keys need is supported: literal key characters and `{{ .a.b.c }}`
 * placeholders (spaces inside the braces optional, so Compozy's `{{.conversation_id}}` works).
 * Pipelines, functions, `{{ . }}` and anything else Go's text/template would evaluate are
 * rejected when the template is parsed, so rendering cannot run code or reach the prototype chain.
 */

import { PayloadError } from './errors.js';
import { validateMemoryKey } from './memory-key.js';

/** Longest template accepted, in characters (UTF-16 code units); a rendered key is at most 256. */
export const KEY_TEMPLATE_MAX_CHARS = 1024;

/** How many parsed templates are kept; the same few templates are rendered for every call. */
export const KEY_TEMPLATE_CACHE_SIZE = 256;

/** A run of literal key characters (`[A-Za-z0-9_:\-@.]`) copied as is. */
export interface KeyTemplateLiteral {
  readonly kind: 'literal';
  /** The literal text, never empty. */
  readonly text: string;
  /** Offset of `text` in the template, in UTF-16 code units. */
  readonly offset: number;
}

/** A `{{ .a.b.c }}` placeholder, replaced by the scalar at that path of the context. */
export interface KeyTemplatePlaceholder {
  readonly kind: 'placeholder';
  /** Path segments, each `[A-Za-z_][A-Za-z0-9_]*`, e.g. `['workflow', 'input', 'user_id']`. */
  readonly path: readonly string[];
  /** The path as written in messages, e.g. `.workflow.input.user_id`. */
  readonly name: string;
  /** Offset of the opening `{{` in the template, in UTF-16 code units. */
  readonly offset: number;
}

/** One part of a parsed template, in template order. */
export type KeyTemplatePart = KeyTemplateLiteral | KeyTemplatePlaceholder;

/** A syntactically valid template, split into parts. Frozen; shared through the parse cache. */
export interface ParsedKeyTemplate {
  /** The template as given. */
  readonly template: string;
  /** Literals and placeholders in order; empty for the empty template. */
  readonly parts: readonly KeyTemplatePart[];
  /** The placeholder names in order of appearance (duplicates kept), e.g. `['.app_id']`. */
  readonly variables: readonly string[];
}

/** Why a template does not parse. */
export interface KeyTemplateProblem {
  /** Offset in the template where the problem starts, in UTF-16 code units. */
  readonly offset: number;
  /**
   * What was found, without the template itself, e.g. `unclosed "{{" at offset 8` or
   * `placeholder "{{ .a | upper }}" is not a dotted path starting with "."`.
   */
  readonly message: string;
}

const KEY_CHAR = /^[A-Za-z0-9_:\-@.]$/;
const PLACEHOLDER_PATH = /^\.[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*$/;
// Spaces and tabs only: a newline is never part of a key template.
const PLACEHOLDER_PADDING = /^[ \t]+|[ \t]+$/g;
const SHOWN_CHARS = 64;
const SCALARS = 'expected a string, number, boolean or bigint';

const cache = new Map<string, ParsedKeyTemplate>();

/**
 * Parses a key template into literal parts and placeholders. Results are cached (at most
 * {@link KEY_TEMPLATE_CACHE_SIZE} templates, least recently used dropped first).
 *
 * Syntax: literal characters from the key alphabet `[A-Za-z0-9_:\-@.]` and placeholders
 * `{{ .seg.seg }}` with segments `[A-Za-z_][A-Za-z0-9_]*` and optional spaces or tabs inside the
 * braces (Compozy-compatible, restricted to what a key can use). The empty template
 * parses (to no parts); rendering it fails the key rule.
 *
 * @returns The parsed template (frozen, possibly shared with earlier calls).
 * @throws PayloadError `key template "<template>": <problem>` (template truncated to 64
 *   characters) for a template longer than {@link KEY_TEMPLATE_MAX_CHARS}, a character outside
 *   the key alphabet, a lone `{` or `}`, `}}` without `{{`, `{{` without `}}`, a nested `{{`, or a
 *   placeholder that is not a dotted path (`{{ }}`, `{{ . }}`, `{{ .a | upper }}`,
 *   `{{constructor}}`). `details`: `{ offset }`.
 */
export function parseKeyTemplate(template: string): ParsedKeyTemplate {
  return parseOrThrow(template, 'key template');
}

/**
 * The non-throwing form of {@link parseKeyTemplate}, for configuration checks that report every
 * problem at once (e.g. `default_key_template` in `memory-resource-schema.ts`).
 *
 * @returns `undefined` when `template` parses, else the first problem found.
 */
export function findKeyTemplateProblem(template: string): KeyTemplateProblem | undefined {
  const result = parseCached(template);
  return 'parts' in result ? undefined : result;
}

/**
 * Renders a key template against `context` and validates the result as an instance key.
 *
 * Each placeholder path is resolved with own data properties only, never the prototype chain
 * (`.constructor`, `.__proto__` and `.toString` on a plain object are missing, not functions).
 * A value must be a non-empty string, a finite number, a boolean or a bigint; it is inserted with
 * `String(value)`. The result is then checked with {@link validateMemoryKey}, so a value with
 * spaces, `/`, braces, `*`, newlines or non-ASCII characters fails with the key rule and a
 * rendered key never contains `{{`. Error messages name paths, never context values (except the
 * 64-character truncated rendering the key rule shows).
 *
 * @param template A key template, see {@link parseKeyTemplate}.
 * @param context The caller's variables, e.g. `{ workflow: { input: { user_id: 'john_doe' } } }`.
 * @param where Names the field in error messages. Default `key`.
 * @returns The validated key, e.g. `user:john_doe`.
 * @throws PayloadError `<where>: key template "<template>": <problem>` when the template does not
 *   parse (`details`: `{ field, offset }`), or `.path is missing from the context`,
 *   `.path is not a scalar (got an object); ...`, `.path is an empty string`,
 *   `.path is not a finite number` (`details`: `{ field, variable }`).
 * @throws PayloadError from {@link validateMemoryKey} when the rendered key breaks the key rule.
 */
export function renderKeyTemplate(template: string, context: unknown, where = 'key'): string {
  return render(template, context, where, 'key template');
}

/** Where a memory key can come from, in precedence order (as in Compozy). */
export interface MemoryKeyInput {
  /**
   * An explicit key. Validated as is, or rendered as a template if it contains `{{`. An empty
   * string is an invalid key, not an absent one.
   */
  key?: string | undefined;
  /** A key template from the caller, used when `key` is absent. */
  keyTemplate?: string | undefined;
  /** The memory resource's `default_key_template`, used when both are absent. */
  defaultKeyTemplate?: string | undefined;
  /** Variables for the template's placeholders. */
  context?: unknown;
}

/**
 * Picks and resolves the instance key (as in Compozy): an explicit `key`, else
 * `keyTemplate`, else the resource's `defaultKeyTemplate`, each rendered against `context` with
 * {@link renderKeyTemplate} (a literal `key` is only validated).
 *
 * @param where Names the field in error messages. Default `key`.
 * @returns The validated key.
 * @throws PayloadError when no source is given
 *   (`<where>: no key: pass key, or a key template, or declare default_key_template in the memory
 *   resource`), or as {@link renderKeyTemplate} / {@link validateMemoryKey} do; a failing
 *   default template is named `default_key_template "<template>"` in the message.
 */
export function resolveMemoryKey(input: MemoryKeyInput, where = 'key'): string {
  if (input.key !== undefined) {
    return input.key.includes('{{')
      ? render(input.key, input.context, where, 'key template')
      : validateMemoryKey(input.key, where);
  }
  if (input.keyTemplate !== undefined) {
    return render(input.keyTemplate, input.context, where, 'key template');
  }
  if (input.defaultKeyTemplate !== undefined) {
    return render(input.defaultKeyTemplate, input.context, where, 'default_key_template');
  }
  throw new PayloadError(
    `${where}: no key: pass key, or a key template, or declare default_key_template in the memory resource`,
    { details: { field: where } },
  );
}

function render(template: string, context: unknown, where: string, label: string): string {
  const parsed = parseOrThrow(template, `${where}: ${label}`, where);
  let key = '';
  for (const part of parsed.parts) {
    if (part.kind === 'literal') {
      key += part.text;
      continue;
    }
    const value = lookup(context, part);
    if (typeof value !== 'string') {
      throw new PayloadError(`${where}: ${label} ${show(template)}: ${value.problem}`, {
        details: { field: where, variable: part.name },
      });
    }
    key += value;
  }
  return validateMemoryKey(key, where);
}

/** The placeholder's value as text, or why there is none. Never puts the value in the problem. */
function lookup(
  context: unknown,
  placeholder: KeyTemplatePlaceholder,
): string | { problem: string } {
  const { path, name } = placeholder;
  let current = context;
  for (let i = 0; i < path.length; i++) {
    if (!isContainer(current)) {
      const holder = i === 0 ? 'the context' : dotted(path.slice(0, i));
      const why =
        i === 0 && current === undefined
          ? 'no context was given'
          : `${holder} is ${describe(current)}, not an object`;
      return { problem: `${name} is missing from the context (${why})` };
    }
    const descriptor = Object.getOwnPropertyDescriptor(current, path[i] ?? '');
    if (descriptor === undefined) {
      const why = i < path.length - 1 ? ` (no ${dotted(path.slice(0, i + 1))})` : '';
      return { problem: `${name} is missing from the context${why}` };
    }
    if (!('value' in descriptor)) {
      return { problem: `${name} is not a scalar (got an accessor property); ${SCALARS}` };
    }
    current = descriptor.value;
  }
  switch (typeof current) {
    case 'string':
      return current === '' ? { problem: `${name} is an empty string` } : current;
    case 'number':
      return Number.isFinite(current)
        ? String(current)
        : { problem: `${name} is not a finite number` };
    case 'boolean':
    case 'bigint':
      return String(current);
    case 'undefined':
      return { problem: `${name} is missing from the context` };
    default:
      return { problem: `${name} is not a scalar (got ${describe(current)}); ${SCALARS}` };
  }
}

function isContainer(value: unknown): value is object {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function describe(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'an array';
  const type = typeof value;
  return type === 'object' || type === 'undefined' ? `an ${type}` : `a ${type}`;
}

function dotted(path: readonly string[]): string {
  return `.${path.join('.')}`;
}

function parseOrThrow(template: string, label: string, field?: string): ParsedKeyTemplate {
  const result = parseCached(template);
  if ('parts' in result) return result;
  throw new PayloadError(`${label} ${show(template)}: ${result.message}`, {
    details: field === undefined ? { offset: result.offset } : { field, offset: result.offset },
  });
}

function parseCached(template: string): ParsedKeyTemplate | KeyTemplateProblem {
  const hit = cache.get(template);
  if (hit !== undefined) {
    cache.delete(template);
    cache.set(template, hit);
    return hit;
  }
  const result = parse(template);
  if ('parts' in result) {
    if (cache.size >= KEY_TEMPLATE_CACHE_SIZE) {
      const oldest = cache.keys().next();
      if (oldest.done !== true) cache.delete(oldest.value);
    }
    cache.set(template, result);
  }
  return result;
}

function parse(template: string): ParsedKeyTemplate | KeyTemplateProblem {
  if (template.length > KEY_TEMPLATE_MAX_CHARS) {
    return {
      offset: KEY_TEMPLATE_MAX_CHARS,
      message: `expected at most ${KEY_TEMPLATE_MAX_CHARS} characters, got ${template.length}`,
    };
  }
  const parts: KeyTemplatePart[] = [];
  let index = 0;
  while (index < template.length) {
    const open = template.indexOf('{{', index);
    const literalEnd = open === -1 ? template.length : open;
    const bad = findLiteralProblem(template, index, literalEnd);
    if (bad !== undefined) return bad;
    if (literalEnd > index) {
      parts.push(
        Object.freeze({ kind: 'literal', text: template.slice(index, literalEnd), offset: index }),
      );
    }
    if (open === -1) break;
    const close = template.indexOf('}}', open + 2);
    if (close === -1) return { offset: open, message: `unclosed "{{" at offset ${open}` };
    const nested = template.indexOf('{{', open + 2);
    if (nested !== -1 && nested < close) {
      return {
        offset: nested,
        message: `nested "{{" at offset ${nested} inside the placeholder opened at offset ${open}`,
      };
    }
    const source = template.slice(open, close + 2);
    const inner = source.slice(2, -2).replace(PLACEHOLDER_PADDING, '');
    if (inner === '' || inner === '.') {
      const what = inner === '' ? 'empty placeholder' : 'placeholder for the whole context';
      return {
        offset: open,
        message: `${what} ${show(source)} at offset ${open}, expected a dotted path like .conversation_id`,
      };
    }
    if (!PLACEHOLDER_PATH.test(inner)) {
      return {
        offset: open,
        message: `placeholder ${show(source)} is not a dotted path starting with "."`,
      };
    }
    const path = Object.freeze(inner.slice(1).split('.'));
    parts.push(Object.freeze({ kind: 'placeholder', path, name: inner, offset: open }));
    index = close + 2;
  }
  const variables = parts.flatMap((part) => (part.kind === 'placeholder' ? [part.name] : []));
  return Object.freeze({
    template,
    parts: Object.freeze(parts),
    variables: Object.freeze(variables),
  });
}

function findLiteralProblem(
  template: string,
  start: number,
  end: number,
): KeyTemplateProblem | undefined {
  for (let i = start; i < end; i++) {
    const unit = template[i] ?? '';
    if (KEY_CHAR.test(unit)) continue;
    if (unit === '}' && template[i + 1] === '}') {
      return { offset: i, message: `"}}" without a matching "{{" at offset ${i}` };
    }
    if (unit === '{' || unit === '}') {
      return { offset: i, message: `an unbalanced brace ${JSON.stringify(unit)} at offset ${i}` };
    }
    const ch = String.fromCodePoint(template.codePointAt(i) ?? 0);
    return {
      offset: i,
      message: `a character not allowed in keys ${JSON.stringify(ch)} at offset ${i}`,
    };
  }
  return undefined;
}

/** JSON-quoted text, truncated to 64 characters (templates may be long or hostile). */
function show(text: string): string {
  return text.length > SHOWN_CHARS
    ? `${JSON.stringify(text.slice(0, SHOWN_CHARS))}... (${text.length} chars)`
    : JSON.stringify(text);
}
