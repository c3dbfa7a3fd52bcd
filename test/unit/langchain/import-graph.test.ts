/**
 * `memq/langchain` (src/langchain/index.ts) loads no server module: compiled as the project
 * compiles it (`verbatimModuleSyntax`: type-only imports are erased), the modules it reaches are
 * its own and pure src/core ones, and the packages are `@langchain/core` (the optional peer
 * dependency) and zod. So a LangChain user of the HTTP client loads neither Redis nor BullMQ.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';

const ENTRY = path.resolve('src/langchain/index.ts');

/** Specifiers of the run-time imports and re-exports of `file` compiled to ES modules. */
function compiledImports(file: string): string[] {
  const { outputText } = ts.transpileModule(readFileSync(file, 'utf8'), {
    compilerOptions: {
      module: ts.ModuleKind.ES2022,
      target: ts.ScriptTarget.ES2023,
      verbatimModuleSyntax: true,
    },
    fileName: file,
  });
  const source = ts.createSourceFile(`${file}.js`, outputText, ts.ScriptTarget.ES2023);
  return source.statements.flatMap((node) =>
    (ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) &&
    node.moduleSpecifier &&
    ts.isStringLiteral(node.moduleSpecifier)
      ? [node.moduleSpecifier.text]
      : [],
  );
}

/** Every repository module (`.ts` path) and package specifier the entry reaches at run time. */
function runtimeGraph(entry: string): { files: string[]; packages: string[] } {
  const files = new Set<string>();
  const packages = new Set<string>();
  const queue = [entry];
  while (queue.length > 0) {
    const file = queue.pop()!;
    if (files.has(file)) continue;
    files.add(file);
    for (const specifier of compiledImports(file)) {
      if (specifier.startsWith('.')) {
        queue.push(path.resolve(path.dirname(file), specifier).replace(/\.js$/, '.ts'));
      } else {
        packages.add(specifier);
      }
    }
  }
  return { files: [...files], packages: [...packages] };
}

describe('memq/langchain run-time imports', () => {
  it('reach src/langchain and src/core only, and no package but @langchain/core and zod', () => {
    const { files, packages } = runtimeGraph(ENTRY);
    const relative = files.map((f) => path.relative(process.cwd(), f));
    expect(relative).toContain('src/langchain/message-mapping.ts');
    for (const file of relative) expect(file).toMatch(/^src\/(langchain|core)\//);
    expect(packages).toContain('@langchain/core/chat_history');
    for (const name of packages) expect(name).toMatch(/^(@langchain\/core\/[\w/]+|zod)$/);
  });
});
