// Cargo runner for wasm32-wasip1 on Node.js >= 20 (node:wasi), for
//   CARGO_TARGET_WASM32_WASIP1_RUNNER="node --no-warnings $PWD/tools/node-wasi-run.mjs"
// Usage: node tools/node-wasi-run.mjs <module.wasm> [args...]
//
// File access: WASI sees only preopened directories. By default the parent of the
// working directory is preopened under its own absolute host path, so a test binary
// (run by cargo in the crate root) can open relative paths such as
// `tests/golden/...` and `env!("CARGO_MANIFEST_DIR")`-based absolute paths unchanged. Override with
// WASI_PREOPENS=/abs/dir1:/abs/dir2 (each mapped to itself).
// The exit code is the module's (wasm32-wasip1 is panic=abort: a failing test aborts
// the whole binary with a non-zero status).
import { readFile } from 'node:fs/promises';
import { WASI } from 'node:wasi';
import path from 'node:path';
import process from 'node:process';

const [wasmPath, ...rest] = process.argv.slice(2);
if (!wasmPath) {
  console.error('usage: node-wasi-run.mjs <module.wasm> [args...]');
  process.exit(2);
}
const dirs = process.env.WASI_PREOPENS
  ? process.env.WASI_PREOPENS.split(':').filter(Boolean)
  : [path.resolve(process.cwd(), '..')];
const preopens = Object.fromEntries(dirs.map((d) => [path.resolve(d), path.resolve(d)]));
const wasi = new WASI({
  version: 'preview1',
  args: [wasmPath, ...rest],
  env: process.env,
  preopens,
  returnOnExit: true,
});
const module = await WebAssembly.compile(await readFile(wasmPath));
const instance = await WebAssembly.instantiate(module, wasi.getImportObject());
process.exit(wasi.start(instance));
