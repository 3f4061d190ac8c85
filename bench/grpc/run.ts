// What one gRPC round trip costs here, the measurement behind src/shared/call-stream.ts: a grpc-js
// unary call, a message and its answer on an open bidirectional stream, and a raw TCP ping-pong,
// each between this process and a child process on loopback (200-byte answers, one at a time),
// with both processes' CPU read from /proc. Writes bench/reports/grpc.md.
//   npm run bench:grpc [-- --calls 3000 --rounds 3]
import { fork } from "node:child_process";
import { writeFileSync } from "node:fs";
import net from "node:net";
import {
  credentials,
  type handleBidiStreamingCall,
  type handleUnaryCall,
  Metadata,
  makeGenericClientConstructor,
  Server,
  ServerCredentials,
} from "@grpc/grpc-js";
import { numberArg } from "../support/args.ts";
import { machineDescription, markdownTable } from "../support/machine.ts";
import { cpuMs } from "../support/proc.ts";

const calls = numberArg("calls", 3_000);
const rounds = numberArg("rounds", 3);
const answerBytes = 200;

const raw = (b: Buffer) => b;
const service = {
  echo: {
    path: "/bench.Echo/Unary",
    requestStream: false,
    responseStream: false,
    requestSerialize: raw,
    requestDeserialize: raw,
    responseSerialize: raw,
    responseDeserialize: raw,
  },
  stream: {
    path: "/bench.Echo/Stream",
    requestStream: true,
    responseStream: true,
    requestSerialize: raw,
    requestDeserialize: raw,
    responseSerialize: raw,
    responseDeserialize: raw,
  },
};

/** The child: a gRPC server (both methods) and a TCP echo, ports sent to the parent. */
function serve(): void {
  const answer = Buffer.alloc(answerBytes);
  const server = new Server();
  const echo: handleUnaryCall<Buffer, Buffer> = (_call, cb) => cb(null, answer);
  const stream: handleBidiStreamingCall<Buffer, Buffer> = (call) => {
    call.on("data", () => call.write(answer));
    call.on("end", () => call.end());
  };
  server.addService(service, { echo, stream });
  server.bindAsync("127.0.0.1:0", ServerCredentials.createInsecure(), (err, grpcPort) => {
    if (err) throw err;
    const tcp = net.createServer((c) => {
      c.setNoDelay(true);
      c.on("data", () => c.write(answer));
    });
    tcp.listen(0, "127.0.0.1", () =>
      process.send!({ grpcPort, tcpPort: (tcp.address() as net.AddressInfo).port }),
    );
  });
}

interface Row {
  path: string;
  usPerCall: number;
  clientCpuUs: number;
  serverCpuUs: number;
}

async function measure(path: string, serverPid: number, one: () => Promise<unknown>): Promise<Row> {
  for (let i = 0; i < 300; i++) await one(); // warm-up: JIT, connection
  const c0 = cpuMs(process.pid);
  const s0 = cpuMs(serverPid);
  const t0 = performance.now();
  for (let i = 0; i < calls; i++) await one();
  const wallMs = performance.now() - t0;
  return {
    path,
    usPerCall: (wallMs * 1000) / calls,
    clientCpuUs: ((cpuMs(process.pid) - c0) * 1000) / calls,
    serverCpuUs: ((cpuMs(serverPid) - s0) * 1000) / calls,
  };
}

async function main() {
  const child = fork(new URL(import.meta.url).pathname, ["--serve"], { execArgv: process.execArgv });
  const { grpcPort, tcpPort } = await new Promise<{ grpcPort: number; tcpPort: number }>((r) =>
    child.once("message", (m) => r(m as { grpcPort: number; tcpPort: number })),
  );
  const Client = makeGenericClientConstructor(service, "Echo");
  const client = new Client(`127.0.0.1:${grpcPort}`, credentials.createInsecure()) as unknown as {
    echo(req: Buffer, md: Metadata, o: object, cb: (e: Error | null, r: Buffer) => void): void;
    stream(): NodeJS.ReadWriteStream & { end(): void };
    close(): void;
  };
  const request = Buffer.alloc(100);
  const unary = () =>
    new Promise((resolve, reject) =>
      client.echo(request, new Metadata(), { deadline: Date.now() + 5_000 }, (e, r) =>
        e ? reject(e) : resolve(r),
      ),
    );
  const duplex = client.stream();
  duplex.on("error", () => undefined); // the end of the run cancels it
  const onStream = () =>
    new Promise((resolve) => {
      duplex.once("data", resolve);
      duplex.write(request);
    });
  const socket = net.connect(tcpPort, "127.0.0.1");
  socket.setNoDelay(true);
  await new Promise((r) => socket.once("connect", r));
  const ping = () =>
    new Promise((resolve) => {
      socket.once("data", resolve);
      socket.write(request);
    });
  const rows: Row[] = [];
  for (let r = 0; r < rounds; r++) {
    rows.push(await measure("grpc-js unary call", child.pid!, unary));
    rows.push(await measure("message on an open grpc-js stream", child.pid!, onStream));
    rows.push(await measure("raw TCP ping-pong", child.pid!, ping));
  }
  socket.destroy();
  duplex.end();
  client.close();
  child.kill();

  const f = (n: number) => n.toFixed(0);
  const table = markdownTable(
    ["round", "path", "µs per round trip", "client CPU µs", "server CPU µs"],
    rows.map((x, i) => [Math.floor(i / 3) + 1, x.path, f(x.usPerCall), f(x.clientCpuUs), f(x.serverCpuUs)]),
  );
  const median = (path: string, k: keyof Row) => {
    const v = rows
      .filter((x) => x.path === path)
      .map((x) => x[k] as number)
      .sort((a, b) => a - b);
    return v[Math.floor(v.length / 2)]!;
  };
  const u = "grpc-js unary call";
  const s = "message on an open grpc-js stream";
  const report = `# One gRPC round trip, unary call against stream message

${machineDescription()}

Between this process and a child process on loopback, one at a time: a grpc-js unary call (100-byte
request, ${answerBytes}-byte answer, a deadline and metadata as our calls carry), the same message and
its answer on one open bidirectional stream, and a raw TCP ping-pong of the same sizes. ${calls} round
trips per row after 300 to warm up, ${rounds} rounds interleaved. CPU from /proc (user + kernel) of each
process over the row. This is what src/shared/call-stream.ts is built on.

${table}

Medians over the rounds: a unary call **${f(median(u, "usPerCall"))} µs** and
${f(median(u, "clientCpuUs") + median(u, "serverCpuUs"))} µs of CPU on both ends; a stream message
**${f(median(s, "usPerCall"))} µs** and ${f(median(s, "clientCpuUs") + median(s, "serverCpuUs"))} µs of CPU
(${(median(u, "usPerCall") / median(s, "usPerCall")).toFixed(1)}× in time).

Reproduce: \`npm run bench:grpc\`.
`;
  writeFileSync("bench/reports/grpc.md", report);
  console.log(report);
}

if (process.argv.includes("--serve")) serve();
else await main();
