// Owns the benchmarks' command-line numbers: `--name value`, or the default when the flag is absent.

/** The number after `--name` on the command line; `dflt` without the flag. Not a number: exits loudly. */
export function numberArg(name: string, dflt: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return dflt;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v))
    throw new Error(`--${name} needs a number, got ${process.argv[i + 1] ?? "nothing"}`);
  return v;
}
