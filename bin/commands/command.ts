/** What each command module (bin/commands/<name>.ts) exports as `command`, and its line in the command table. */
export interface Command {
  /** Full help text, printed by `dtr-cache <name> --help`. */
  readonly usage: string;
  run(args: readonly string[]): Promise<number>;
}

export interface CommandEntry {
  readonly summary: string;
  load(): Promise<{ readonly command: Command }>;
}
