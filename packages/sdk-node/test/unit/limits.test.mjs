// An answer is read up to MAX_ANSWER_BYTES, decoded: a small gzip answer that inflates past it
// (a gzip bomb from a wrong `baseUrl`) is a ServerError, read no further and never retried.
import assert from "node:assert/strict";
import { createServer } from "node:http";
import { Readable } from "node:stream";
import { buffer } from "node:stream/consumers";
import { describe, test } from "node:test";
import { createGzip, gzipSync } from "node:zlib";

import { AgentFirewall, ServerError } from "../../dist/esm/index.js";
import { MAX_ANSWER_BYTES } from "../../dist/esm/transport.js";
import { actionAnswer } from "../helpers/http-server.mjs";

const KEY = "aaf_test_0123456789abcdef0123456789abcdef";
const ACTION = { type: "github.pr.merge" };

/** `bytes` spaces, gzipped a MiB at a time: twice the cap costs ~600 KB on the wire. */
function gzipBomb(bytes) {
  const piece = Buffer.alloc(1 << 20, 0x20);
  const pieces = (function* () {
    for (let sent = 0; sent < bytes; sent += piece.length) yield piece;
  })();
  return buffer(Readable.from(pieces).pipe(createGzip({ level: 1 })));
}

/** A server answering every request with `status` and the gzipped `body`; counts requests. */
async function gzipServer(status, body) {
  const server = createServer((req, res) => {
    req.resume();
    req.on("end", () => {
      server.requests += 1;
      res.writeHead(status, { "Content-Type": "application/json", "Content-Encoding": "gzip" });
      res.end(body);
    });
  });
  server.requests = 0;
  await new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(undefined)));
  return server;
}

async function withServer(status, body, run) {
  const server = await gzipServer(status, body);
  try {
    const baseUrl = `http://127.0.0.1:${server.address().port}/api`;
    return await run(server, new AgentFirewall({ apiKey: KEY, baseUrl, retryBackoffSeconds: 0 }));
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(() => resolve(undefined)));
  }
}

describe("answer size", () => {
  for (const status of [200, 503]) {
    test(`a ${status} gzip answer inflating past the cap is a ServerError, not retried`, async () => {
      const bomb = await gzipBomb(2 * MAX_ANSWER_BYTES);
      await withServer(status, bomb, async (server, client) => {
        await assert.rejects(client.requestAction(ACTION), (error) => {
          assert.ok(error instanceof ServerError, String(error));
          assert.equal(error.statusCode, status);
          assert.equal(error.retryable, false);
          assert.match(error.message, new RegExp(`^the answer is larger than ${MAX_ANSWER_BYTES} bytes: is \``));
          return true;
        });
        assert.equal(server.requests, 1);
      });
    });
  }

  test("a gzip answer within the cap is read as before", async () => {
    await withServer(200, gzipSync(JSON.stringify(actionAnswer())), async (server, client) => {
      const result = await client.requestAction(ACTION);
      assert.equal(result.status, "allowed");
      assert.equal(server.requests, 1);
    });
  });
});
