// A TCP proxy a test can cut: put it between a service and Redis, then `cut()` to make Redis
// unreachable for real (connections reset, new ones refused) and `restore()` to bring it back.
import net from "node:net";

export interface TcpProxy {
  port: number;
  url(scheme: string): string;
  cut(): void;
  restore(): Promise<void>;
  close(): Promise<void>;
}

export async function startTcpProxy(targetHost: string, targetPort: number): Promise<TcpProxy> {
  const sockets = new Set<net.Socket>();
  let server: net.Server;
  let port = 0;
  const listen = () =>
    new Promise<void>((resolve, reject) => {
      server = net.createServer((client) => {
        const upstream = net.connect(targetPort, targetHost);
        sockets.add(client);
        sockets.add(upstream);
        const drop = () => {
          client.destroy();
          upstream.destroy();
          sockets.delete(client);
          sockets.delete(upstream);
        };
        client.on("error", drop).on("close", drop);
        upstream.on("error", drop).on("close", drop);
        client.pipe(upstream);
        upstream.pipe(client);
      });
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => {
        const a = server.address();
        if (a && typeof a === "object") port = a.port;
        resolve();
      });
    });
  await listen();
  const closeServer = () => new Promise<void>((resolve) => server.close(() => resolve()));
  return {
    get port() {
      return port;
    },
    url: (scheme) => `${scheme}://127.0.0.1:${port}`,
    cut() {
      server.close();
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    restore: () => listen(),
    async close() {
      for (const s of sockets) s.destroy();
      await closeServer().catch(() => undefined);
    },
  };
}
