// The production RaftNode, five replicas, on the simulated disk, network and clock (node-suite.ts).
import { nodeSimSuite } from "./node-suite.ts";

nodeSimSuite(5, 200_001, 300);
