// Owns reading a process's CPU time from /proc (Linux), for the benchmarks that split where the
// CPU goes by process.
import { readdirSync, readFileSync } from "node:fs";

const ticksPerS = 100; // USER_HZ on Linux

/** CPU time of a process and of its children that ended (wrk), in ms, and the kernel's part of it. */
export function cpuTimes(pid: number): { totalMs: number; systemMs: number } {
  const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
  // utime, stime, cutime, cstime: fields 14–17, counted after the command's closing parenthesis.
  const [utime, stime, cutime, cstime] = stat
    .slice(stat.lastIndexOf(")") + 2)
    .split(" ")
    .slice(11, 15)
    .map(Number) as [number, number, number, number];
  const ms = (ticks: number) => (ticks * 1000) / ticksPerS;
  return { totalMs: ms(utime + stime + cutime + cstime), systemMs: ms(stime + cstime) };
}

export const cpuMs = (pid: number): number => cpuTimes(pid).totalMs;

/** CPU ms of every process named `comm` (PostgreSQL's backends and workers, redis-server). */
export function cpuMsOfAll(comm: string): number {
  let total = 0;
  for (const pid of readdirSync("/proc")) {
    if (!/^\d+$/.test(pid)) continue;
    try {
      if (readFileSync(`/proc/${pid}/comm`, "utf8").trim() === comm) total += cpuMs(Number(pid));
    } catch {
      // gone meanwhile
    }
  }
  return total;
}
