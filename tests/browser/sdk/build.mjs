// Bundles OpenAI's @openai/agents-realtime for the drop-in test page (no CDN, no build at runtime).
// Usage: node sdk/build.mjs [outfile]   (default: sdk/dist/agents-realtime.js)
import { build } from "esbuild";
import { fileURLToPath } from "node:url";

const here = (path) => fileURLToPath(new URL(path, import.meta.url));

await build({
  entryPoints: [here("./entry.js")],
  outfile: process.argv[2] ?? here("./dist/agents-realtime.js"),
  bundle: true,
  format: "esm",
  platform: "browser",
  target: "es2022",
  logLevel: "warning",
});
