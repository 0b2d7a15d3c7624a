/** The part of madge's API (v8) the import-circle check uses; madge ships no type declarations. */
declare module 'madge' {
  interface MadgeConfig {
    baseDir?: string;
    fileExtensions?: string[];
    tsConfig?: string;
  }
  interface MadgeResult {
    /** Each module and the modules it imports. */
    obj(): Record<string, string[]>;
    /** Each import circle as the list of modules on it. */
    circular(): string[][];
  }
  function madge(path: string | string[], config?: MadgeConfig): Promise<MadgeResult>;
  export default madge;
}
