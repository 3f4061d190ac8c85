// The production RaftNode, three replicas, on the simulated disk, network and clock (node-suite.ts).
import { nodeSimSuite } from "./node-suite.ts";

nodeSimSuite(3, 1, 600);
