// The production RaftNode, three replicas, with clients that restart mid-write and reuse the seq of
// the write they forgot (node-suite.ts; params.ts clientRestartRate): the state machine must refuse
// each reuse, never answer it with the first command's result.
import { nodeSimSuite } from "./node-suite.ts";

nodeSimSuite(3, 300_001, 150, 50, { clientRestarts: true });
