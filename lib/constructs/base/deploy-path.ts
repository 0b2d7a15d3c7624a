/**
 * Paths of files Terraform reads at apply (certificates, keys, a client bundle). A file of the project (under the
 * folder synth runs in) is written relative to the directory Terraform runs in: `cdktf deploy` runs it in
 * <outdir>/stacks/<stack>, so the path is `path.module` joined with the file's path relative to that directory, and a
 * plan synthesized in CI applies from another checkout with the same layout. A file of the machine (outside the
 * project, e.g. /etc/dtr-cache/s3-secret-key) stays absolute: it is at the same place on the machine that applies,
 * wherever either checkout sits.
 */
import { isAbsolute, relative, resolve } from 'node:path';
import { IConstruct } from 'constructs';
import { App, Aspects, Fn, IAspect, LocalBackend, ref, TerraformBackend, TerraformStack, Token } from 'cdktf';

/** The directory Terraform runs in for `scope`'s stack, absolute. */
export function stackDirectory(scope: IConstruct): string {
  return resolve(App.of(scope).outdir, 'stacks', TerraformStack.of(scope).node.id);
}

/** Whether `absolutePath` is inside the folder synth runs in (the project's). */
export function isProjectPath(absolutePath: string): boolean {
  const inside = relative(process.cwd(), absolutePath);
  return inside !== '' && !inside.startsWith('..') && !isAbsolute(inside);
}

/** `absolutePath` as Terraform reads it at apply: relative to `path.module` for a project file, else as given. */
export function deployPath(scope: IConstruct, absolutePath: string): string {
  if (!isProjectPath(absolutePath)) return absolutePath;
  // join() rather than a "${path.module}/…" template: cdktf escapes a template nested in a function argument.
  return Fn.join('/', [Token.asString(ref('path.module')), relative(stackDirectory(scope), absolutePath)]);
}

/**
 * Makes the stack's default local state path (cdktf writes <synth cwd>/terraform.<stack>.tfstate, absolute) relative to
 * the stack's directory. Only the default local backend is touched; a backend the stack configures is left alone. An
 * aspect, because cdktf adds the default backend after the constructs are built (App.synth's prepareStack).
 */
export class PortableLocalState implements IAspect {
  /** Adds the aspect to `scope`'s stack, once. */
  public static addTo(scope: IConstruct): void {
    const aspects = Aspects.of(TerraformStack.of(scope));
    if (!aspects.all.some((a) => a instanceof PortableLocalState)) aspects.add(new PortableLocalState());
  }

  public visit(node: IConstruct): void {
    if (!(node instanceof TerraformStack)) return;
    const backends = node.node.findAll().filter(TerraformBackend.isBackend);
    if (backends.length !== 1 || !(backends[0] instanceof LocalBackend)) return;
    const path = (backends[0].toTerraform() as { terraform: { backend: { local: { path?: string } } } }).terraform.backend.local.path;
    if (path && isAbsolute(path)) node.addOverride('terraform.backend.local.path', relative(stackDirectory(node), path));
  }
}
