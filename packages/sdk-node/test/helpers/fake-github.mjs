// A fake GitHub REST API on 127.0.0.1 (plain HTTP, ephemeral port) that records what it
// receives: enough of the API for the seed's `octokit.pulls.merge` and for the server's
// GitHub connector executing `github.pr.merge` (Mode A).
import { createServer } from "node:http";

const MERGE = /^\/repos\/([^/]+)\/([^/]+)\/pulls\/(\d+)\/merge$/;

export async function startFakeGitHub() {
  const requests = [];
  const server = createServer((req, res) => {
    const chunks = [];
    req.on("data", (chunk) => chunks.push(chunk));
    req.on("end", () => {
      const text = Buffer.concat(chunks).toString("utf8");
      requests.push({
        method: req.method,
        path: req.url,
        authorization: req.headers.authorization ?? null,
        body: text,
      });
      const merge = MERGE.exec(req.url ?? "");
      const [status, body] =
        merge && req.method === "PUT"
          ? [
              200,
              {
                sha: "6dcb09b5b57875f334f61aebed695e2e4193db5e",
                merged: true,
                message: "Pull Request successfully merged",
              },
            ]
          : [404, { message: "Not Found", documentation_url: "https://docs.github.com/rest" }];
      res.writeHead(status, { "Content-Type": "application/json; charset=utf-8" });
      res.end(JSON.stringify(body));
    });
  });
  await new Promise((done) => server.listen(0, "127.0.0.1", () => done(undefined)));
  const { port } = server.address();
  return {
    url: `http://127.0.0.1:${port}`,
    requests,
    close: () => new Promise((done) => server.close(() => done(undefined))),
  };
}
