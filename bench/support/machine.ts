// Describes the machine a benchmark ran on, for its report: numbers only compare within one run.
import os from "node:os";

export function machineDescription(): string {
  const cpus = os.cpus();
  return [
    `- date: ${new Date().toISOString()}`,
    `- cpu: ${cpus[0]?.model ?? "unknown"} × ${cpus.length}`,
    `- memory: ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`,
    `- os: ${os.type()} ${os.release()} (${os.arch()})`,
    `- node: ${process.version}`,
  ].join("\n");
}

export function markdownTable(header: string[], rows: (string | number)[][]): string {
  const line = (cells: (string | number)[]) => `| ${cells.join(" | ")} |`;
  return [line(header), line(header.map(() => "---")), ...rows.map(line)].join("\n");
}
