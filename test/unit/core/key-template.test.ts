import { describe, expect, it } from 'vitest';
import { PayloadError } from '../../../src/core/errors.js';
import {
  KEY_TEMPLATE_CACHE_SIZE,
  findKeyTemplateProblem,
  parseKeyTemplate,
  renderKeyTemplate,
  resolveMemoryKey,
} from '../../../src/core/key-template.js';

const KEY_RULE =
  'key: expected 1-256 characters of letters, digits, _ : - @ . not starting or ending with "__", got';

/** Renders and returns the key, or the error message prefixed with `error: `. */
function outcome(template: string, context: unknown): string {
  try {
    return renderKeyTemplate(template, context);
  } catch (error) {
    if (error instanceof PayloadError) return `error: ${error.message}`;
    throw error;
  }
}

// [what, template, context, the key or the error message]
const renders: [string, string, unknown, string][] = [
  [
    'a nested workflow variable (Compozy spacing)',
    'user:{{.workflow.input.user_id}}',
    { workflow: { input: { user_id: 'john_doe' } } },
    'user:john_doe',
  ],
  [
    'two variables, one of them a number',
    'session:{{ .app_id }}:{{ .session_id }}',
    { app_id: 'myapp', session_id: 12345 },
    'session:myapp:12345',
  ],
  ['a literal key', 'static_key_123', {}, 'static_key_123'],
  ['a literal key without a context', 'static_key_123', undefined, 'static_key_123'],
  ['a boolean and a bigint', 'f:{{ .flag }}:{{ .big }}', { flag: true, big: 10n }, 'f:true:10'],
  ['tabs inside the braces', 'c:{{\t.id\t}}', { id: 'x' }, 'c:x'],
  ['a placeholder only', '{{ .id }}', { id: 'a@b.c' }, 'a@b.c'],
  ['an own __proto__ data property', 'p:{{ .__proto__ }}', JSON.parse('{"__proto__":"x"}'), 'p:x'],
  [
    'a missing variable',
    'support:{{ .conversation_id }}',
    {},
    'error: key: key template "support:{{ .conversation_id }}": .conversation_id is missing from the context',
  ],
  [
    'a missing parent',
    'user:{{ .workflow.input.user_id }}',
    { workflow: {} },
    'error: key: key template "user:{{ .workflow.input.user_id }}": .workflow.input.user_id is missing from the context (no .workflow.input)',
  ],
  [
    'a scalar parent',
    'user:{{ .workflow.input }}',
    { workflow: 'w' },
    'error: key: key template "user:{{ .workflow.input }}": .workflow.input is missing from the context (.workflow is a string, not an object)',
  ],
  [
    'no context',
    'support:{{ .id }}',
    undefined,
    'error: key: key template "support:{{ .id }}": .id is missing from the context (no context was given)',
  ],
  [
    'an array context',
    'support:{{ .length }}',
    [1, 2],
    'error: key: key template "support:{{ .length }}": .length is missing from the context (the context is an array, not an object)',
  ],
  [
    'an undefined value',
    'support:{{ .id }}',
    { id: undefined },
    'error: key: key template "support:{{ .id }}": .id is missing from the context',
  ],
  [
    'a null value',
    'support:{{ .id }}',
    { id: null },
    'error: key: key template "support:{{ .id }}": .id is not a scalar (got null); expected a string, number, boolean or bigint',
  ],
  [
    'an object value',
    'support:{{ .id }}',
    { id: { a: 1 } },
    'error: key: key template "support:{{ .id }}": .id is not a scalar (got an object); expected a string, number, boolean or bigint',
  ],
  [
    'an array value',
    'support:{{ .id }}',
    { id: ['a'] },
    'error: key: key template "support:{{ .id }}": .id is not a scalar (got an array); expected a string, number, boolean or bigint',
  ],
  [
    'a function value',
    'support:{{ .id }}',
    { id: () => 'a' },
    'error: key: key template "support:{{ .id }}": .id is not a scalar (got a function); expected a string, number, boolean or bigint',
  ],
  [
    'a getter',
    'support:{{ .id }}',
    Object.defineProperty({}, 'id', { get: () => 'a', enumerable: true }),
    'error: key: key template "support:{{ .id }}": .id is not a scalar (got an accessor property); expected a string, number, boolean or bigint',
  ],
  [
    'an empty string value',
    'support:{{ .id }}',
    { id: '' },
    'error: key: key template "support:{{ .id }}": .id is an empty string',
  ],
  [
    'NaN',
    'support:{{ .id }}',
    { id: Number.NaN },
    'error: key: key template "support:{{ .id }}": .id is not a finite number',
  ],
  [
    'Infinity',
    'support:{{ .id }}',
    { id: Number.POSITIVE_INFINITY },
    'error: key: key template "support:{{ .id }}": .id is not a finite number',
  ],
  // The prototype chain is never consulted: these are missing variables, not functions.
  [
    '.constructor against {}',
    'k:{{ .constructor }}',
    {},
    'error: key: key template "k:{{ .constructor }}": .constructor is missing from the context',
  ],
  [
    '.__proto__ against {}',
    'k:{{ .__proto__ }}',
    {},
    'error: key: key template "k:{{ .__proto__ }}": .__proto__ is missing from the context',
  ],
  [
    '.toString against {}',
    'k:{{ .toString }}',
    {},
    'error: key: key template "k:{{ .toString }}": .toString is missing from the context',
  ],
  [
    '.hasOwnProperty below a nested object',
    'k:{{ .a.hasOwnProperty }}',
    { a: {} },
    'error: key: key template "k:{{ .a.hasOwnProperty }}": .a.hasOwnProperty is missing from the context',
  ],
  // Values that break the key rule.
  ['a value with a space', 'user:{{ .id }}', { id: 'a b' }, `error: ${KEY_RULE} "user:a b"`],
  ['a value with a slash', 'user:{{ .id }}', { id: 'a/b' }, `error: ${KEY_RULE} "user:a/b"`],
  ['a value with a newline', 'user:{{ .id }}', { id: 'a\nb' }, `error: ${KEY_RULE} "user:a\\nb"`],
  ['a value with *', 'user:{{ .id }}', { id: '*' }, `error: ${KEY_RULE} "user:*"`],
  ['a value with {', 'user:{{ .id }}', { id: 'a{b' }, `error: ${KEY_RULE} "user:a{b"`],
  ['a value with }', 'user:{{ .id }}', { id: 'a}b' }, `error: ${KEY_RULE} "user:a}b"`],
  [
    'a value that is a template',
    'user:{{ .id }}',
    { id: '{{ .id }}' },
    `error: ${KEY_RULE} "user:{{ .id }}"`,
  ],
  ['a value with é', 'user:{{ .id }}', { id: 'clé' }, `error: ${KEY_RULE} "user:clé"`],
  ['an emoji value', 'user:{{ .id }}', { id: '😀' }, `error: ${KEY_RULE} "user:😀"`],
  ['a value __proto__', '{{ .id }}', { id: '__proto__' }, `error: ${KEY_RULE} "__proto__"`],
  ['a value __proto__x', '{{ .id }}', { id: '__proto__x' }, `error: ${KEY_RULE} "__proto__x"`],
  ['a value x__', 'k:{{ .id }}__', { id: 'x' }, `error: ${KEY_RULE} "k:x__"`],
  ['a number rendered as 1e+21', 'n:{{ .n }}', { n: 1e21 }, `error: ${KEY_RULE} "n:1e+21"`],
  [
    'a 10k-character value',
    'user:{{ .id }}',
    { id: 'a'.repeat(10_000) },
    `error: ${KEY_RULE} "user:${'a'.repeat(59)}"... (10005 chars)`,
  ],
  ['the empty template', '', {}, `error: ${KEY_RULE} ""`],
  // Templates that do not parse.
  [
    'a 10k-character template',
    'a'.repeat(10_000),
    {},
    `error: key: key template "${'a'.repeat(64)}"... (10000 chars): expected at most 1024 characters, got 10000`,
  ],
  [
    'a newline in the template',
    'user:\n{{ .id }}',
    { id: 'x' },
    'error: key: key template "user:\\n{{ .id }}": a character not allowed in keys "\\n" at offset 5',
  ],
  [
    'a newline inside the braces',
    'user:{{\n.id }}',
    { id: 'x' },
    'error: key: key template "user:{{\\n.id }}": placeholder "{{\\n.id }}" is not a dotted path starting with "."',
  ],
  [
    'a * in the template',
    'user:*',
    {},
    'error: key: key template "user:*": a character not allowed in keys "*" at offset 5',
  ],
  [
    'an emoji in the template',
    'user:😀{{ .id }}',
    { id: 'x' },
    'error: key: key template "user:😀{{ .id }}": a character not allowed in keys "😀" at offset 5',
  ],
  [
    '{{constructor}}',
    'k:{{constructor}}',
    {},
    'error: key: key template "k:{{constructor}}": placeholder "{{constructor}}" is not a dotted path starting with "."',
  ],
  [
    '}} without {{',
    'user:.id}}',
    {},
    'error: key: key template "user:.id}}": "}}" without a matching "{{" at offset 8',
  ],
  [
    '{{ without }}',
    'user:{{ .id',
    { id: 'x' },
    'error: key: key template "user:{{ .id": unclosed "{{" at offset 5',
  ],
  [
    'a lone {',
    'user:{ .id }',
    { id: 'x' },
    'error: key: key template "user:{ .id }": an unbalanced brace "{" at offset 5',
  ],
  [
    'a third closing brace',
    'user:{{ .id }}}',
    { id: 'x' },
    'error: key: key template "user:{{ .id }}}": an unbalanced brace "}" at offset 14',
  ],
  [
    'a pipeline',
    'u:{{ .a | upper }}',
    { a: 'x' },
    'error: key: key template "u:{{ .a | upper }}": placeholder "{{ .a | upper }}" is not a dotted path starting with "."',
  ],
  [
    'a function call',
    'u:{{ printf "%s" .a }}',
    { a: 'x' },
    'error: key: key template "u:{{ printf \\"%s\\" .a }}": placeholder "{{ printf \\"%s\\" .a }}" is not a dotted path starting with "."',
  ],
  [
    'nested placeholders',
    'u:{{ {{ .a }} }}',
    { a: 'x' },
    'error: key: key template "u:{{ {{ .a }} }}": nested "{{" at offset 5 inside the placeholder opened at offset 2',
  ],
  [
    'an empty placeholder',
    'u:{{}}',
    {},
    'error: key: key template "u:{{}}": empty placeholder "{{}}" at offset 2, expected a dotted path like .conversation_id',
  ],
  [
    'a blank placeholder',
    'u:{{  }}',
    {},
    'error: key: key template "u:{{  }}": empty placeholder "{{  }}" at offset 2, expected a dotted path like .conversation_id',
  ],
  [
    'the whole context',
    'u:{{ . }}',
    { a: 'x' },
    'error: key: key template "u:{{ . }}": placeholder for the whole context "{{ . }}" at offset 2, expected a dotted path like .conversation_id',
  ],
  [
    'a trailing dot',
    'u:{{ .a. }}',
    { a: 'x' },
    'error: key: key template "u:{{ .a. }}": placeholder "{{ .a. }}" is not a dotted path starting with "."',
  ],
  [
    'a segment starting with a digit',
    'u:{{ .0 }}',
    ['x'],
    'error: key: key template "u:{{ .0 }}": placeholder "{{ .0 }}" is not a dotted path starting with "."',
  ],
  [
    'Go trim markers',
    'u:{{- .a -}}',
    { a: 'x' },
    'error: key: key template "u:{{- .a -}}": placeholder "{{- .a -}}" is not a dotted path starting with "."',
  ],
];

describe('renderKeyTemplate', () => {
  it.each(renders)('renders %s', (_what, template, context, expected) => {
    expect(outcome(template, context)).toBe(expected);
  });

  it('never returns a key containing "{{" for any case in the table', () => {
    for (const [, template, context] of renders) {
      const result = outcome(template, context);
      if (!result.startsWith('error: ')) expect(result).not.toContain('{{');
    }
  });

  it('never puts more than 64 characters of a value in a message', () => {
    const secret = `${'s'.repeat(100)} private`;
    expect(outcome('u:{{ .id }}', { id: secret })).not.toContain('private');
  });

  it('names the field given as where', () => {
    expect(() => renderKeyTemplate('u:{{ .id }}', {}, 'messages[0].key')).toThrow(
      'messages[0].key: key template "u:{{ .id }}": .id is missing from the context',
    );
    expect(() => renderKeyTemplate('u:{{ .id }}', { id: 'a b' }, 'messages[0].key')).toThrow(
      /^messages\[0\]\.key: expected 1-256 characters/,
    );
  });

  it('reports the field and the variable, not the value, in details', () => {
    try {
      renderKeyTemplate('u:{{ .a.b }}', { a: { b: { secret: 1 } } });
      expect.fail('expected a PayloadError');
    } catch (error) {
      expect(error).toBeInstanceOf(PayloadError);
      expect((error as PayloadError).details).toEqual({ field: 'key', variable: '.a.b' });
    }
  });

  it('does not read through the prototype of a context created with a prototype', () => {
    const context: unknown = Object.create({ id: 'inherited' });
    expect(outcome('u:{{ .id }}', context)).toBe(
      'error: key: key template "u:{{ .id }}": .id is missing from the context',
    );
  });

  it('accepts a context without a prototype', () => {
    const context = Object.assign(Object.create(null) as Record<string, unknown>, { id: 'x' });
    expect(renderKeyTemplate('u:{{ .id }}', context)).toBe('u:x');
  });
});

describe('parseKeyTemplate', () => {
  it('splits a template into literals and placeholders', () => {
    const parsed = parseKeyTemplate('session:{{ .app_id }}:{{.workflow.input.user_id}}');
    expect(parsed.parts).toEqual([
      { kind: 'literal', text: 'session:', offset: 0 },
      { kind: 'placeholder', path: ['app_id'], name: '.app_id', offset: 8 },
      { kind: 'literal', text: ':', offset: 21 },
      {
        kind: 'placeholder',
        path: ['workflow', 'input', 'user_id'],
        name: '.workflow.input.user_id',
        offset: 22,
      },
    ]);
    expect(parsed.variables).toEqual(['.app_id', '.workflow.input.user_id']);
  });

  it('returns the same frozen result for the same template', () => {
    const first = parseKeyTemplate('cached:{{ .id }}');
    expect(parseKeyTemplate('cached:{{ .id }}')).toBe(first);
    expect(Object.isFrozen(first)).toBe(true);
    expect(Object.isFrozen(first.parts)).toBe(true);
  });

  it('keeps parsing correctly after the cache overflows', () => {
    for (let i = 0; i < KEY_TEMPLATE_CACHE_SIZE * 2; i++) {
      expect(renderKeyTemplate(`t${i}:{{ .id }}`, { id: i })).toBe(`t${i}:${i}`);
    }
  });

  it('throws a PayloadError naming the template and the offset', () => {
    let thrown: unknown;
    try {
      parseKeyTemplate('support:{{ .id }');
    } catch (error) {
      thrown = error;
    }
    expect(thrown).toBeInstanceOf(PayloadError);
    expect((thrown as PayloadError).message).toBe(
      'key template "support:{{ .id }": unclosed "{{" at offset 8',
    );
    expect((thrown as PayloadError).details).toEqual({ offset: 8 });
  });

  it('accepts a template of exactly 1024 characters', () => {
    expect(parseKeyTemplate('a'.repeat(1024)).parts).toHaveLength(1);
  });
});

describe('findKeyTemplateProblem', () => {
  it.each([
    ['support:{{ .conversation_id }}', undefined],
    ['support:{{ conversation_id }}', 8],
    ['u:{{ .a | upper }}', 2],
    ['}}', 0],
  ])('finds the problem in %s at offset %s', (template, offset) => {
    expect(findKeyTemplateProblem(template)?.offset).toBe(offset);
  });
});

describe('resolveMemoryKey', () => {
  const context = { conversation_id: 'c1', user_id: 'u1' };
  // [what, input, the key or the error message]
  const cases: [string, Parameters<typeof resolveMemoryKey>[0], string][] = [
    [
      'an explicit key wins over both templates',
      {
        key: 'explicit',
        keyTemplate: 'user:{{ .user_id }}',
        defaultKeyTemplate: 'support:{{ .conversation_id }}',
        context,
      },
      'explicit',
    ],
    [
      'an explicit key with {{ is rendered',
      { key: 'k:{{ .user_id }}', defaultKeyTemplate: 'd:{{ .user_id }}', context },
      'k:u1',
    ],
    [
      'a key template wins over the default',
      {
        keyTemplate: 'user:{{ .user_id }}',
        defaultKeyTemplate: 'support:{{ .conversation_id }}',
        context,
      },
      'user:u1',
    ],
    [
      'the default template is used last',
      { defaultKeyTemplate: 'support:{{ .conversation_id }}', context },
      'support:c1',
    ],
    [
      'an explicit key is validated',
      { key: 'a b', defaultKeyTemplate: 'support:{{ .conversation_id }}', context },
      `error: ${KEY_RULE} "a b"`,
    ],
    [
      'an empty explicit key is invalid, not absent',
      { key: '', defaultKeyTemplate: 'support:{{ .conversation_id }}', context },
      `error: ${KEY_RULE} ""`,
    ],
    [
      'a literal explicit key is not rendered',
      { key: 'user:.id}}', context },
      `error: ${KEY_RULE} "user:.id}}"`,
    ],
    [
      'a failing default template is named as such',
      { defaultKeyTemplate: 'support:{{ .conversation_id }}', context: {} },
      'error: key: default_key_template "support:{{ .conversation_id }}": .conversation_id is missing from the context',
    ],
    [
      'no source at all',
      { context },
      'error: key: no key: pass key, or a key template, or declare default_key_template in the memory resource',
    ],
  ];

  it.each(cases)('resolves %s', (_what, input, expected) => {
    let result: string;
    try {
      result = resolveMemoryKey(input);
    } catch (error) {
      if (!(error instanceof PayloadError)) throw error;
      result = `error: ${error.message}`;
    }
    expect(result).toBe(expected);
    if (!result.startsWith('error: ')) expect(result).not.toContain('{{');
  });
});
