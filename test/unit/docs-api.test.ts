/**
 * The API reference (`npm run docs`, TypeDoc) is only as good as the doc comments: every public property of the
 * construct library must say what it is. TypeDoc's own notDocumented validation also flags the members of types
 * inferred from the zod config schema (which cannot carry comments), so this check reads lib/constructs with the
 * TypeScript parser instead and looks only at what a platform team sets or reads: properties of exported interfaces,
 * public properties and accessors of exported classes, and public constructor parameter properties.
 */
import { readFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import * as ts from 'typescript';
import { typeScriptFiles } from '../../harness/source-files';

const ROOT = join(__dirname, '..', '..');
const CONSTRUCTS = join(ROOT, 'lib', 'constructs');

function hasModifier(node: ts.Node, kind: ts.SyntaxKind): boolean {
  return ts.canHaveModifiers(node) && (ts.getModifiers(node) ?? []).some((m) => m.kind === kind);
}

/** A doc comment with text (a bare `@default` tag alone does not say what the property is). */
function documented(node: ts.Node): boolean {
  return ts.getJSDocCommentsAndTags(node).some((doc) => ts.isJSDoc(doc) && (ts.getTextOfJSDocComment(doc.comment) ?? '').trim() !== '');
}

function isPublic(member: ts.Node): boolean {
  if (hasModifier(member, ts.SyntaxKind.PrivateKeyword) || hasModifier(member, ts.SyntaxKind.ProtectedKeyword)) return false;
  const name = (member as ts.NamedDeclaration).name;
  return !(name && ts.isPrivateIdentifier(name));
}

/** "file:line Owner.member" for each undocumented public property of the exported declarations in `file`. */
export function undocumentedProps(file: string, text: string): string[] {
  const source = ts.createSourceFile(file, text, ts.ScriptTarget.ES2022, true);
  const where = (node: ts.Node): string => `${relative(ROOT, file)}:${source.getLineAndCharacterOfPosition(node.getStart()).line + 1}`;
  const problems: string[] = [];
  const report = (owner: string, member: ts.NamedDeclaration): void => {
    if (!documented(member)) problems.push(`${where(member)} ${owner}.${member.name?.getText(source) ?? '?'}`);
  };
  for (const statement of source.statements) {
    if (!hasModifier(statement, ts.SyntaxKind.ExportKeyword)) continue;
    if (ts.isInterfaceDeclaration(statement)) {
      for (const member of statement.members) if (ts.isPropertySignature(member)) report(statement.name.text, member);
    } else if (ts.isClassDeclaration(statement) && statement.name) {
      const owner = statement.name.text;
      for (const member of statement.members) {
        if ((ts.isPropertyDeclaration(member) || ts.isGetAccessorDeclaration(member)) && isPublic(member)) report(owner, member);
        if (ts.isConstructorDeclaration(member)) {
          for (const param of member.parameters) {
            const isProperty = ts.isParameterPropertyDeclaration(param, member);
            if (isProperty && isPublic(param) && !hasModifier(member, ts.SyntaxKind.PrivateKeyword)) report(owner, param);
          }
        }
      }
    }
  }
  return problems;
}

describe('API reference: doc comments of lib/constructs', () => {
  it('finds undocumented properties of interfaces and classes (the checker itself)', () => {
    const sample = [
      'export interface P {',
      '  /** Documented. */ readonly a: string;',
      '  readonly b?: number;',
      '  /** @default 1 */ readonly c?: number;',
      '}',
      'export class C {',
      '  /** Documented. */ public readonly x = 1;',
      '  public readonly y = 2;',
      '  private readonly z = 3;',
      '  get w(): number { return 1; }',
      '  constructor(public readonly p: string, private readonly q: string, /** Documented. */ public readonly r: string) {}',
      '}',
      'interface NotExported { readonly n: string }',
    ].join('\n');
    const found = undocumentedProps(join(ROOT, 'sample.ts'), sample).map((p) => p.replace(/^\S+ /, ''));
    expect(found).toEqual(['P.b', 'P.c', 'C.y', 'C.w', 'C.p']);
  });

  it('documents every public property of the construct library', () => {
    const files = typeScriptFiles(CONSTRUCTS);
    expect(files.length).toBeGreaterThan(0);
    const problems = files.flatMap((file) => undocumentedProps(file, readFileSync(file, 'utf8')));
    // The message lists each property, so the fix is a doc comment at that line.
    expect({ undocumented: problems }).toEqual({ undocumented: [] });
  });
});
