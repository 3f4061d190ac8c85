// The production RaftNode, three replicas, on links with a bandwidth and with snapshots streamed in
// 64-byte chunks (node-suite.ts; params.ts bandwidthBytesPerMs): a snapshot costs its size on the
// wire, and transfers must cost at most two chunk messages per chunk they needed.
import { nodeSimSuite } from "./node-suite.ts";

nodeSimSuite(3, 500_001, 100, 50, { bandwidth: true });
