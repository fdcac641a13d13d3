// The console in a real browser (Chromium, driven by playwright-core), on a
// running `sluice demo`: every screen opens; a query runs and is drawn as
// a chart; a live event arrives; a dead letter is fixed, replayed and found
// in the lake. Screenshots of each screen go to the artifacts directory.
//
// Usage: node tests/console.test.mjs http://127.0.0.1:8080 ARTIFACTS_DIR
// (the Go test TestConsoleInBrowser in cmd/sluice runs it). CHROMIUM names
// the browser; /usr/bin/chromium by default.
import { chromium } from 'playwright-core'
import { mkdirSync } from 'node:fs'
import { join } from 'node:path'

const [base, artifacts] = process.argv.slice(2)
if (!base || !artifacts) {
  console.error('usage: node tests/console.test.mjs BASE_URL ARTIFACTS_DIR')
  process.exit(2)
}
mkdirSync(artifacts, { recursive: true })
const marker = 'm' + Date.now().toString(36)

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage'],
})
const page = await browser.newPage({ viewport: { width: 1400, height: 1000 } })
const problems = []
page.on('pageerror', (e) => problems.push('page error: ' + e.message))
page.on('console', (m) => {
  if (m.type() === 'error') problems.push('console error: ' + m.text())
})

let failed = false
async function step(name, fn) {
  const start = Date.now()
  try {
    await fn()
    await page.screenshot({ path: join(artifacts, name + '.png'), fullPage: true })
    console.log(`ok   ${name} (${Date.now() - start} ms)`)
  } catch (e) {
    failed = true
    console.log(`FAIL ${name}: ${e.message}`)
    await page.screenshot({ path: join(artifacts, name + '.failed.png'), fullPage: true }).catch(() => {})
  }
}

async function post(path, body) {
  const res = await fetch(base + path, { method: 'POST', headers: { 'Content-Type': 'application/json' }, body })
  return res.status
}

// until retries fn every interval until it returns true, or fails after
// timeout.
async function until(what, fn, timeout = 60000, interval = 1000) {
  const end = Date.now() + timeout
  for (;;) {
    if (await fn()) return
    if (Date.now() > end) throw new Error('timed out waiting for ' + what)
    await page.waitForTimeout(interval)
  }
}

await step('overview', async () => {
  await page.goto(base + '/#/overview')
  await page.getByTestId('components').getByText('collector').first().waitFor()
  await page.getByTestId('lag').getByText('sluice-loader-lake').first().waitFor()
  await page.getByText('Events per second').waitFor()
})

await step('live', async () => {
  await page.goto(base + '/#/live?topic=sluice.raw&field=marker')
  await page.getByTestId('live-state').getByText('live').waitFor()
  const status = await post('/api/v1/collect', JSON.stringify({ event_type: 'browser_live', schema_version: '1-0-0', payload: { marker } }))
  if (status !== 200) throw new Error('collect answered ' + status)
  await page.getByTestId('live-records').getByText('browser_live', { exact: true }).waitFor({ timeout: 20000 })
  // Paused, an event arrives; resumed, it is shown: nothing lost.
  await page.getByTestId('pause').click()
  await post('/api/v1/collect', JSON.stringify({ event_type: 'browser_live_paused', schema_version: '1-0-0', payload: { marker } }))
  await page.waitForTimeout(500)
  await page.getByTestId('pause').click()
  await page.getByTestId('live-records').getByText('browser_live_paused', { exact: true }).waitFor({ timeout: 20000 })
})

await step('topics', async () => {
  await page.goto(base + '/#/topics')
  await page.getByTestId('topics').getByText('sluice.raw').click()
  await page.getByTestId('records').locator('details').first().waitFor()
})

await step('failed-events', async () => {
  // A body that is not JSON: the collector dead-letters it.
  const bad = `{"event_type":"browser_fix","schema_version":"1-0-0","payload":{"marker":"${marker}"}`
  const status = await post('/api/v1/collect', bad)
  if (status !== 400) throw new Error('a broken body was answered ' + status)
  await page.goto(base + '/#/failed?stage=collector&reason=invalid_json&since=15m')
  const row = page.locator('tr.clickable').filter({ hasText: 'invalid_json' }).last()
  await until('the dead letter', async () => {
    if (await row.count()) return true
    await page.reload()
    return false
  }, 30000)
  await page.getByTestId('replay-as').fill('browser test')
  await row.click()
  await page.getByTestId('dead-letter').waitFor()
  await page.getByTestId('fix-editor').fill(bad + '}')
  await page.getByTestId('replay-fixed').click()
  await page.getByTestId('replay-result').waitFor({ timeout: 30000 })
  // Recorded, with who.
  await page.locator('tr').filter({ hasText: 'browser test (console at' }).first().waitFor({ timeout: 10000 })
})

await step('fixed-event-in-lake', async () => {
  const sql = `SELECT event_type, marker FROM browser_fix WHERE marker = '${marker}'`
  await page.goto(base + '/#/sql?sql=' + encodeURIComponent(sql))
  await until('the fixed event in the lake', async () => {
    await page.getByTestId('run').click()
    await page.waitForTimeout(300)
    return (await page.getByTestId('result').getByText(marker).count()) > 0
  }, 90000, 2000)
})

await step('sql-chart', async () => {
  const sql = 'SELECT event_date, count(*) AS trips FROM yellow_taxi_trip GROUP BY 1 ORDER BY 1'
  await page.goto(base + '/#/sql?sql=' + encodeURIComponent(sql) + '&chart=bar&x=event_date&y=trips')
  await page.getByTestId('result').locator('td').first().waitFor()
  await page.getByTestId('chart').locator('canvas').waitFor()
  // The chart is in the URL: a reload draws it again.
  await page.reload()
  await page.getByTestId('chart').locator('canvas').waitFor()
  if ((await page.getByTestId('chart-kind').inputValue()) !== 'bar') throw new Error('the chart kind was not kept in the URL')
  await page.getByTestId('schema').getByText('yellow_taxi_trip', { exact: true }).waitFor()
})

await step('lake', async () => {
  await page.goto(base + '/#/lake?table=yellow_taxi_trip')
  await page.locator('tr.selected').getByText('yellow_taxi_trip').waitFor()
  await page.getByTestId('table-detail').getByText('Snapshots').waitFor()
  await page.getByTestId('table-detail').getByText('fare_amount').first().waitFor()
})

await step('jobs', async () => {
  await page.goto(base + '/#/jobs')
  await page.getByTestId('job-runs').getByText('tlc_daily_zone').first().waitFor()
  await page.getByTestId('check-failures').getByText('negative_amounts').first().waitFor()
})

await browser.close()
const real = problems.filter((p) => !p.includes('Failed to load resource'))
if (real.length) {
  failed = true
  console.log('FAIL browser errors:\n  ' + real.join('\n  '))
}
process.exit(failed ? 1 : 0)
