// 1,000 seeds × 2,000 steps on 5 nodes (seeds 100001.., disjoint from the 3-node file's).
import { simSuite } from "./simSuite.ts";

simSuite(5, 100_001, 4_600, 460);
