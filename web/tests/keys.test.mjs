// The console of a sluice up with keys, in Chromium: it asks for a key,
// refuses a wrong one, lets a read key look but not replay, and an admin
// key replay.
//
// Usage: node tests/keys.test.mjs BASE_URL ARTIFACTS_DIR READ_KEY ADMIN_KEY
import { chromium } from 'playwright-core'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'

const [base, artifacts, readKey, adminKey] = process.argv.slice(2)
if (!adminKey) {
  console.error('usage: node tests/keys.test.mjs BASE_URL ARTIFACTS_DIR READ_KEY ADMIN_KEY')
  process.exit(2)
}
mkdirSync(artifacts, { recursive: true })
const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
})
const page = await browser.newPage({ viewport: { width: 1400, height: 900 } })
let failed = false
async function step(name, fn) {
  try {
    await fn()
    await page.screenshot({ path: join(artifacts, name + '.png'), fullPage: true })
    console.log(`ok   ${name}`)
  } catch (e) {
    failed = true
    console.log(`FAIL ${name}: ${e.message}`)
    await page.screenshot({ path: join(artifacts, name + '.failed.png'), fullPage: true }).catch(() => {})
  }
}
async function login(key) {
  await page.getByLabel(/Console key/).fill(key)
  await page.getByRole('button', { name: 'Open' }).click()
}

// A dead letter to look at.
await fetch(base + '/api/v1/collect', { method: 'POST', headers: { 'Content-Type': 'application/json' }, body: '{"event_type":' })

await step('keys-asked', async () => {
  await page.goto(base + '/#/failed')
  await page.getByLabel(/Console key/).waitFor()
  await login('wrong')
  await page.getByText('That key was refused.').waitFor()
})

await step('keys-read', async () => {
  await login(readKey)
  await page.getByText('read key').waitFor()
  await page.locator('tr.clickable').filter({ hasText: 'invalid_json' }).first().click()
  await page.getByTestId('dead-letter').waitFor()
  if (await page.getByTestId('replay-matching').count()) throw new Error('a read key is offered to replay everything')
  if (await page.getByTestId('replay-fixed').count()) throw new Error('a read key is offered to replay one')
})

await step('keys-admin', async () => {
  await page.getByRole('button', { name: 'forget key' }).click()
  await page.getByLabel(/Console key/).waitFor()
  await login(adminKey)
  await page.getByText('admin key').waitFor()
  await page.goto(base + '/#/failed')
  await page.getByTestId('replay-matching').click()
  await page.getByTestId('bulk-report').waitFor()
})

await browser.close()
process.exit(failed ? 1 : 0)
