// Compiles src/ into dist/ once before the suite: the CLI, worker and consumer-package tests run the built
// JavaScript, exactly what `npm ci` (prepare) leaves on a user's machine. A type error fails the whole run here.
const { execFileSync } = require('child_process');
const path = require('path');

module.exports = async () => {
  const root = path.resolve(__dirname, '..');
  try {
    execFileSync(process.execPath, [require.resolve('typescript/bin/tsc'), '-p', 'tsconfig.build.json'], { cwd: root, stdio: 'pipe' });
  } catch (e) {
    throw new Error(`tsc -p tsconfig.build.json failed:\n${String(e.stdout || '')}${String(e.stderr || '')}`);
  }
};
