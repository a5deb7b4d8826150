'use strict';
// Loads the compiled addon. TSLCC_NATIVE_PATH points at another build (tests, packaging).
const path = require('node:path');

function load() {
  const candidates = [
    process.env.TSLCC_NATIVE_PATH,
    path.join(__dirname, '..', 'build', 'Release', 'tslcc_native.node'),
    path.join(__dirname, '..', 'build', 'Debug', 'tslcc_native.node'),
  ].filter(Boolean);
  let lastError;
  for (const file of candidates) {
    try {
      return require(file);
    } catch (e) {
      lastError = e;
      if (e.code !== 'MODULE_NOT_FOUND') break;
    }
  }
  const err = new Error(
    `load @tslcc/native: ${lastError ? lastError.message : 'no build found'}; ` +
    'build it with "npm run build -w @tslcc/native" (needs libbpf-dev, libelf-dev, zlib1g-dev, g++)');
  err.code = 'LBC_NATIVE';
  throw err;
}

module.exports = load();
