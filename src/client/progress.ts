// Owns the live view: a progress bar (cli-progress) with elapsed time, the rate of the last second,
// failures so far and the running p99, drawn only when stdout is a terminal, so piped output and
// --json stay clean.
import cliProgress from "cli-progress";
import type { Recorder } from "./stats.ts";

export interface Progress {
  stop(): void;
}

const refreshMs = 250;

export function startProgress(
  recorder: Recorder,
  durationMs: number,
  stream: NodeJS.WriteStream = process.stdout,
): Progress {
  if (!stream.isTTY) return { stop() {} };
  const bar = new cliProgress.SingleBar(
    {
      stream,
      format: "{bar} {percentage}% | {elapsed}/{total} s | {rate} req/s | {failures} failed | p99 {p99} ms",
      hideCursor: true,
      clearOnComplete: true,
      barsize: 30,
    },
    cliProgress.Presets.shades_classic,
  );
  const totalS = Math.ceil(durationMs / 1_000);
  const startedAt = performance.now();
  // The rate over the last second: completions a second ago, by sample.
  const samples: { at: number; done: number }[] = [];
  bar.start(totalS, 0, { elapsed: 0, rate: 0, failures: 0, p99: "0.00" });
  const timer = setInterval(() => {
    const now = performance.now();
    const live = recorder.live();
    samples.push({ at: now, done: live.done });
    while (samples.length > 1 && now - samples[0]!.at > 1_000) samples.shift();
    const first = samples[0]!;
    const spanS = (now - first.at) / 1_000;
    const rate = spanS > 0 ? Math.round((live.done - first.done) / spanS) : 0;
    const elapsedS = Math.min(totalS, Math.floor((now - startedAt) / 1_000));
    bar.update(elapsedS, { elapsed: elapsedS, rate, failures: live.failures, p99: live.p99Ms.toFixed(2) });
  }, refreshMs);
  timer.unref();
  return {
    stop() {
      clearInterval(timer);
      bar.stop();
    },
  };
}
