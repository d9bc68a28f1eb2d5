// A real Node MCP server (the official @modelcontextprotocol/sdk, stdio) for tests/mcpwrap.
import { McpServer } from "@modelcontextprotocol/sdk/server/mcp.js";
import { StdioServerTransport } from "@modelcontextprotocol/sdk/server/stdio.js";
import { z } from "zod";

const server = new McpServer({ name: "node-tests", version: "1.0.0" });

server.tool("echo", { text: z.string() }, async ({ text }) => ({
  content: [{ type: "text", text: `node: ${text}` }],
}));

server.tool("delete_repo", { name: z.string() }, async ({ name }) => ({
  content: [{ type: "text", text: `deleted ${name}` }],
}));

await server.connect(new StdioServerTransport());
