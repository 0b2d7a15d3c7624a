// node -r ts-node/register/transpile-only bench/function-sizes.ts [--top=N] [dirs...]: the largest functions
// (declarations, methods, constructors, accessors, arrow and function expressions) in the TypeScript files under
// the given folders (default lib and bin), by lines from the first line to the last, largest first.
import { readFileSync } from 'node:fs';
import { relative } from 'node:path';
import ts from 'typescript';
import { typeScriptFiles } from '../harness/source-files';

interface FunctionSize {
  readonly file: string;
  readonly name: string;
  readonly line: number;
  readonly lines: number;
}

function nameOf(node: ts.Node, source: ts.SourceFile): string {
  const named = node as ts.Node & { name?: ts.Node };
  if (named.name) return named.name.getText(source);
  if (ts.isConstructorDeclaration(node)) return 'constructor';
  const parent = node.parent;
  if (parent && ts.isVariableDeclaration(parent)) return parent.name.getText(source);
  if (parent && ts.isPropertyAssignment(parent)) return parent.name.getText(source);
  if (parent && ts.isPropertyDeclaration(parent)) return parent.name.getText(source);
  return '(anonymous)';
}

function functionsIn(file: string): FunctionSize[] {
  const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.ES2022, true);
  const found: FunctionSize[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && (node as ts.FunctionLikeDeclaration).body) {
      const first = source.getLineAndCharacterOfPosition(node.getStart(source)).line;
      const last = source.getLineAndCharacterOfPosition(node.getEnd()).line;
      found.push({ file, name: nameOf(node, source), line: first + 1, lines: last - first + 1 });
    }
    ts.forEachChild(node, visit);
  };
  visit(source);
  return found;
}

const args = process.argv.slice(2);
const top = Number(args.find((arg) => arg.startsWith('--top='))?.slice('--top='.length) ?? 10);
const dirs = args.filter((arg) => !arg.startsWith('--'));
const sizes = (dirs.length > 0 ? dirs : ['lib', 'bin'])
  .flatMap(typeScriptFiles)
  .flatMap(functionsIn)
  .sort((a, b) => b.lines - a.lines || a.file.localeCompare(b.file));
for (const size of sizes.slice(0, top)) {
  console.log(`${String(size.lines).padStart(5)}  ${relative(process.cwd(), size.file)}:${size.line}  ${size.name}`);
}
