// 1,000 seeds × 2,000 steps on 3 nodes (the other half of the campaign is sim-5nodes.test.ts, so
// vitest's two workers share it).
import { simSuite } from "./simSuite.ts";

simSuite(3, 1, 4_600, 460);
