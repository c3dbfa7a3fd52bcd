/**
 * `memq/http` (src/client/http.ts) needs nothing at run time but `fetch`: compiled as the
 * project compiles it (`verbatimModuleSyntax`: type-only imports are erased), the modules it
 * reaches import only each other -- no zod, no server module, no package, no Node built-in.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const CLIENT_DIR = path.resolve('src/client');
const ENTRY = path.join(CLIENT_DIR, 'http.ts');

/**
 * The specifiers of the run-time imports and re-exports of `text` (the source of `file`) once
 * compiled to JavaScript as the package is (ES modules, `verbatimModuleSyntax`).
 */
function compiledImports(file: string, text = readFileSync(file, 'utf8')): string[] {
  const { outputText } = ts.transpileModule(text, {
    compilerOptions: {
      module: ts.ModuleKind.ES2022,
      target: ts.ScriptTarget.ES2023,
      verbatimModuleSyntax: true,
    },
    fileName: file,
  });
  const source = ts.createSourceFile(`${file}.js`, outputText, ts.ScriptTarget.ES2023);
  const found: string[] = [];
  const visit = (node: ts.Node) => {
    if (
      (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) &&
      node.moduleSpecifier &&
      ts.isStringLiteral(node.moduleSpecifier)
    ) {
      found.push(node.moduleSpecifier.text);
    } else if (
      ts.isCallExpression(node) &&
      (node.expression.kind === ts.SyntaxKind.ImportKeyword ||
        (ts.isIdentifier(node.expression) && node.expression.text === 'require'))
    ) {
      const [arg] = node.arguments;
      found.push(arg && ts.isStringLiteral(arg) ? arg.text : '<computed>');
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

/** Every module the entry reaches at run time (`.ts` paths), and every specifier seen. */
function runtimeGraph(entry: string): { files: string[]; specifiers: string[] } {
  const files = new Set<string>();
  const specifiers: string[] = [];
  const queue = [entry];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (files.has(file)) continue;
    files.add(file);
    for (const specifier of compiledImports(file)) {
      specifiers.push(specifier);
      if (specifier.startsWith('.')) {
        queue.push(path.resolve(path.dirname(file), specifier).replace(/\.js$/, '.ts'));
      }
    }
  }
  return { files: [...files], specifiers };
}

describe('memq/http run-time imports', () => {
  it('reach only modules of src/client, never a package, a built-in or a server module', () => {
    const { files, specifiers } = runtimeGraph(ENTRY);
    expect(specifiers.length).toBeGreaterThan(0); // the walk sees the client's own imports
    for (const specifier of specifiers) expect(specifier).toMatch(/^\.\/[\w-]+\.js$/);
    for (const file of files) expect(path.dirname(file)).toBe(CLIENT_DIR);
  });

  it('sees a value import when one is there (the check can fail)', () => {
    const probe = path.join(CLIENT_DIR, 'http.ts');
    const withValueImport = readFileSync(probe, 'utf8').replace(
      "import type { z } from 'zod';",
      "import { z } from 'zod';",
    );
    expect(compiledImports(probe, withValueImport)).toContain('zod');
  });
});
