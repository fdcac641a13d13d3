// The console's build: the sources here become internal/console/dist, which
// the sluice binary embeds, so that it serves the console without Node.
// The build also writes dist/SOURCES, a hash of the sources it was made
// from; a Go test (internal/console, TestEmbeddedBuildIsFresh) fails when
// the sources no longer hash to it, that is, when the build is older.
import { defineConfig } from 'vite'
import preact from '@preact/preset-vite'
import { createHash } from 'node:crypto'
import { readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs'
import { join, relative, sep } from 'node:path'

// The files the build depends on: keep in step with sourceFiles in
// internal/console/web_test.go.
function sourceFiles(root) {
  const out = ['index.html', 'package-lock.json', 'tsconfig.json', 'vite.config.js']
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      const full = join(dir, name)
      if (statSync(full).isDirectory()) walk(full)
      else out.push(relative(root, full).split(sep).join('/'))
    }
  }
  walk(join(root, 'src'))
  return out.sort()
}

function sourceHash(root) {
  const h = createHash('sha256')
  for (const f of sourceFiles(root)) {
    h.update(f + '\n')
    h.update(readFileSync(join(root, f)))
    h.update('\n')
  }
  return h.digest('hex')
}

const outDir = '../internal/console/dist'

export default defineConfig({
  plugins: [
    preact(),
    {
      name: 'sluice-source-hash',
      closeBundle() {
        writeFileSync(join(outDir, 'SOURCES'), sourceHash(process.cwd()) + '\n')
      },
    },
  ],
  base: '/',
  build: {
    outDir,
    emptyOutDir: true,
    assetsDir: 'assets',
    sourcemap: false,
    chunkSizeWarningLimit: 1024,
  },
})
