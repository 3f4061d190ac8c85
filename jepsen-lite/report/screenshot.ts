// Owns docs/jepsen-report.png: runs one failing mutation case for real (read-local under a
// partition, failpoint on), opens its index.html in headless Chromium and photographs the page at
// the checker's explanation, with the op that cannot be placed highlighted in the timeline below it.
// `npm run jepsen:screenshot` (PostgreSQL and Redis running, as for npm test).
import path from "node:path";
import { fileURLToPath } from "node:url";
import { mutationCases, runMutation } from "../mutations.ts";
import { openReport, screenshotFailure } from "./browser.ts";

const png = path.join(path.dirname(fileURLToPath(import.meta.url)), "../../docs/jepsen-report.png");
const c = mutationCases.find((m) => m.failpoint === "read-local")!;
const r = await runMutation(c);
if (r.check.result !== "fail") {
  process.stderr.write(`expected the ${c.failpoint} run to fail, it was ${r.check.result}: ${r.dir}\n`);
  process.exit(1);
}
const page = await openReport(path.join(r.dir, "index.html"), { width: 1440, height: 1000 });
try {
  if (!(await page.page.locator(`#op-${r.check.failure!.blocked}`).isVisible())) {
    throw new Error("the failing op is not visible");
  }
  await screenshotFailure(page, png);
} finally {
  await page.close();
}
process.stdout.write(`${png}\n  from ${r.dir}\n  ${r.check.failure!.explanation}\n`);
